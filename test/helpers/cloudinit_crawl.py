"""Crawls 169.254.169.254 with cloud-init's own datasource helpers (Debian's
cloud-init 22.4), from inside a guest namespace, and prints what it found as
JSON. Any warning or error cloud-init logs while crawling is reported too."""
import base64
import json
import logging
import sys

from cloudinit import util
from cloudinit.sources.helpers import ec2, openstack

BASE = "http://169.254.169.254"
problems = []


class Collect(logging.Handler):
    def emit(self, record):
        if record.levelno >= logging.WARNING:
            problems.append(record.getMessage())


logging.getLogger().addHandler(Collect())
logging.getLogger().setLevel(logging.DEBUG)

out = {}
md = ec2.get_instance_metadata("2009-04-04", BASE, retries=0, timeout=5)
ud = ec2.get_instance_userdata("2009-04-04", BASE, retries=0, timeout=5)
ident = ec2.get_instance_identity("2009-04-04", BASE, retries=0, timeout=5)
out["ec2"] = {
    "instance_id": md.get("instance-id"),
    "mac": md.get("mac"),
    "public_keys": md.get("public-keys"),
    "user_data": ud.decode() if isinstance(ud, bytes) else ud,
    "identity_document": ident.get("document"),
    "macs": sorted(md.get("network", {}).get("interfaces", {}).get("macs", {}).keys()),
}

reader = openstack.MetadataReader(BASE, timeout=5, retries=0)
v2 = reader.read_v2()
meta = v2["metadata"]
out["openstack"] = {
    "uuid": meta.get("uuid"),
    "name": meta.get("name"),
    "public_keys": meta.get("public_keys"),
    "random_seed_len": len(meta.get("random_seed") or b""),
    "user_data": v2.get("userdata").decode() if isinstance(v2.get("userdata"), bytes) else v2.get("userdata"),
    "networkdata": v2.get("networkdata"),
    "ec2_instance_id": v2.get("ec2-metadata", {}).get("instance-id"),
    "version": reader._find_working_version(),
    "network_config": openstack.convert_net_json(v2.get("networkdata")),
}

nmd, nud, nvd = util.read_seeded(BASE + "/nocloud/", timeout=5, retries=0)
out["nocloud"] = {"meta_data": nmd, "user_data": nud.decode() if isinstance(nud, bytes) else nud}
out["problems"] = problems
json.dump(out, sys.stdout, default=lambda o: base64.b64encode(o).decode() if isinstance(o, bytes) else str(o))
