import t from 'tap';
import { startLab } from '/work/main/test/helpers/hostnet_lab.js';
t.test('timing', async (t) => {
  let s = Date.now(); const lap = (w: string) => { t.comment(`${w}: ${Date.now() - s} ms`); s = Date.now(); };
  const lab = await startLab(t); lap('start');
  const net = await lab.network('a', '10.63.0.0/24'); lap('network');
  const g1 = await lab.json(['instance','create','g1','--network','a']); lap('create');
  await lab.execOk('g1', ['ip','addr','add','10.63.0.1/24','dev','eth0']); lap('exec');
  await lab.show('a'); lap('show');
  await lab.guest('g2','a'); lap('guest');
  await lab.ping('g1', '10.63.0.2'); lap('ping');
  await lab.ctl(['status']); lap('status');
});
