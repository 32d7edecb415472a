// The admin socket row: who may reach berthd's admin API, and what hostile
// input sent through it can do to the domain libvirt runs. The XML checked is
// the one libvirt holds (virsh dumpxml --inactive), not the string berth
// rendered: a hostile and a plain guest, created alike, must be defined alike.
import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Instance } from '../../agent/api/types.js';
import { groupId } from '../../agent/api/unix-socket.js';
import { ensureTestGuest } from '../../images/test-guest.js';
import { type AsUser, berthctlAs, NOBODY } from '../helpers/as_user.js';
import { libvirtUp, removeDomains, virsh } from '../helpers/compute_lab.js';
import { attack, see } from './result.js';

// Every character XML treats specially, both quotes, and what an injection would add.
const EVIL = `'"><devices><qemu:commandline xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0"><qemu:arg value="-PWNED"/></qemu:commandline></devices><x a='&amp;&lt;`;

/** The domain XML libvirt holds for an instance, with its own values (name, ids, MAC, port) replaced. */
async function definedXml(inst: Instance): Promise<{ raw: string; shape: string }> {
  const raw = (await virsh('dumpxml', '--inactive', inst.domain as string)).stdout;
  const nic = inst.nics[0];
  let shape = raw;
  for (const [value, mark] of [
    [inst.domain as string, 'DOMAIN'],
    [inst.uuid, 'UUID'],
    [inst.id, 'ID'],
    [nic?.port as string, 'PORT'],
    [nic?.mac as string, 'MAC'],
  ] as const)
    shape = shape.replaceAll(value, mark);
  return { raw, shape };
}

export const adminSocket = attack(
  'The admin socket: outsiders and hostile input',
  'a uid outside group berth cannot connect (0660 root:berth); XML-special characters and quotes in name, meta (tags), user-data and an SSH key never change the domain XML libvirt holds; the refused and the accepted changes are audited with the caller’s uid and gid',
  async (t, { lab, subnet }) => {
    const berth = await groupId('berth');
    if (berth === undefined) throw new Error('group berth is missing: run scripts/provision.sh');
    await libvirtUp();
    const guest = await ensureTestGuest();
    t.teardown(() => removeDomains(lab.prefix));
    const socket = lab.d.socket;
    // Traversable, so the socket's own mode decides who gets in.
    await chmod(dirname(socket), 0o711);
    const st = await stat(socket);
    const env = { BERTH_SOCKET: socket };
    const member: AsUser = { uid: NOBODY, gid: NOBODY, groups: [berth] };
    const outsider: AsUser = { uid: NOBODY, gid: NOBODY, groups: [] };

    const outside = await berthctlAs(outsider, ['network', 'delete', 'adm'], env);
    const inside = await berthctlAs(member, ['status'], env);

    const net = 'adm';
    await lab.network(net, subnet());
    const imp = await lab.ctl([
      'image',
      'import',
      guest.kernel,
      '--name',
      'adm-guest',
      '--initrd',
      guest.initrd,
      '--cmdline',
      guest.cmdline,
    ]);
    if (imp.code !== 0) throw new Error(`image import: ${imp.stderr}`);

    // The member's files: readable by that uid.
    const dir = await mkdtemp(join(tmpdir(), 'berth-adm-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    await chmod(dir, 0o755);
    const userData = join(dir, 'user-data');
    const key = join(dir, 'key.pub');
    await writeFile(userData, `#!/bin/sh\necho ${EVIL}\n`, { mode: 0o644 });
    await writeFile(key, `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAdm1n ${EVIL}\n`, { mode: 0o644 });
    const create = (name: string, extra: string[]) =>
      berthctlAs(
        member,
        [
          'instance',
          'create',
          name,
          '--network',
          net,
          '--runtime',
          'libvirt',
          '--image',
          'adm-guest',
          ...extra,
          '--json',
        ],
        env,
      );

    const badName = await create(`adm${EVIL}`, []);
    const idName = await create('i-deadbeef', []);
    const badKey = await create('adm-badkey', ['--meta', `${EVIL}=1`]);
    const plain = await create('adm-plain', ['--meta', 'role=web']);
    const hostile = await create('adm-evil', [
      '--meta',
      `role=${EVIL}`,
      '--meta',
      `note=${EVIL}`,
      '--user-data',
      userData,
      '--ssh-key',
      key,
    ]);
    if (plain.code !== 0 || hostile.code !== 0)
      throw new Error(
        `libvirt creates: plain exit ${plain.code} ${plain.stdout}${plain.stderr}; hostile exit ${hostile.code} ${hostile.stdout}${hostile.stderr}`,
      );
    const p = JSON.parse(plain.stdout) as Instance;
    const h = JSON.parse(hostile.stdout) as Instance;
    const [px, hx] = await Promise.all([definedXml(p), definedXml(h)]);
    const stored = await lab.d.client.instance('adm-evil');
    const gone = await Promise.all(
      ['adm-plain', 'adm-evil'].map((n) => berthctlAs(member, ['instance', 'delete', n], env)),
    );

    const { records } = await lab.d.client.audit({ limit: 10000 });
    const byPid = (pid: number) => records.filter((r) => r.peer?.pid === pid);
    const refusedAudited = [badName, idName, badKey].every((r) =>
      byPid(r.pid).some(
        (a) =>
          a.outcome === 'refused' &&
          a.detail?.change === 'admin.instance.create' &&
          a.peer?.uid === NOBODY &&
          a.peer.gid === NOBODY,
      ),
    );
    const acceptedAudited = [plain, hostile].every((r) =>
      byPid(r.pid).some(
        (a) => a.event === 'admin.instance.create' && a.outcome === 'allowed' && a.peer?.uid === NOBODY,
      ),
    );
    const deletesAudited = gone.every((r) =>
      byPid(r.pid).some((a) => a.event === 'admin.instance.delete' && a.outcome === 'allowed'),
    );
    return [
      see(
        (st.mode & 0o777) === 0o660 && st.uid === 0 && st.gid === berth,
        `socket mode ${(st.mode & 0o777).toString(8)}, owner ${st.uid}:${st.gid}`,
      ),
      see(
        outside.code === 3 && /permission denied/.test(outside.stderr),
        `uid ${NOBODY} outside group berth: exit ${outside.code}, ${/permission denied/.test(outside.stderr) ? 'permission denied' : outside.stderr.trim()}`,
      ),
      see(inside.code === 0, `control: uid ${NOBODY} in group berth reaches berthd (exit ${inside.code})`),
      see(
        [badName, idName, badKey].every((r) => r.code === 1),
        `a name with XML characters, an id-shaped name and a meta key with them: exits ${[badName, idName, badKey].map((r) => r.code).join(', ')} (${[badName, idName, badKey].map((r) => String(JSON.parse(r.stdout || '{}').error?.field ?? '?').split('.')[0]).join(', ')} refused)`,
      ),
      see(
        stored.meta?.note === EVIL && stored.ssh_keys?.[0]?.key.includes(EVIL) === true,
        'control: berth stored the hostile meta and key as given',
      ),
      see(
        hx.shape === px.shape,
        `the domain libvirt holds for the hostile guest is the plain guest's, value for value (${hx.raw.length} and ${px.raw.length} bytes)`,
      ),
      see(!/PWNED|commandline|&amp;&lt;/.test(hx.raw), 'none of the hostile text is in its XML'),
      see(
        gone.every((r) => r.code === 0),
        'both guests deleted',
      ),
      see(
        refusedAudited && acceptedAudited && deletesAudited,
        `audit: the 3 refused and 4 accepted changes carry uid ${NOBODY} gid ${NOBODY} and their pids`,
      ),
    ];
  },
);
