"""cloud-init's own datasource classes (Debian's cloud-init 22.4) against
berth, run inside a guest namespace with Debian's python3.

usage: cloudinit_datasources.py SOURCE DMI_JSON
  SOURCE    ec2 | ec2-aws | openstack | nocloud-net
  DMI_JSON  the DMI strings a libvirt guest of berth reads (system-product-name,
            system-serial-number, ...), as berth's domain XML puts them in SMBIOS

A netns guest shares the host's kernel and so its DMI: the one thing replaced
here is cloud-init's DMI reader, which answers what berth's domain XML gives a
real guest. `ec2-aws` also answers AWS's platform identification (a system
UUID starting "ec2"), the only platform on which cloud-init 22.4's Ec2
datasource does the IMDSv2 token flow; berth never claims to be AWS, so this
is how a test reaches that code path. Everything else (discovery, the token
PUT, the API version probe, the crawl, parsing) is cloud-init's own, through
the public get_data().

Prints one JSON object: whether get_data() found data, what the datasource
then answers through its public methods, every request it sent (recorded at
the requests layer, below cloud-init), and every warning it logged.
"""
import base64
import json
import logging
import sys
import tempfile

import requests
from cloudinit import distros, dmi, helpers

source, dmi_json = sys.argv[1], sys.argv[2]
DMI = json.loads(dmi_json)
if source == "ec2-aws":
    # AWS's Nitro instances: the system UUID starts "ec2" and equals the serial.
    DMI["system-uuid"] = "ec2e1916-9099-7caf-fd21-012345abcdef"
    DMI["system-serial-number"] = DMI["system-uuid"]

problems = []
asked = []


class Collect(logging.Handler):
    def emit(self, record):
        if record.levelno >= logging.WARNING:
            problems.append(record.getMessage())


logging.getLogger().addHandler(Collect())
logging.getLogger().setLevel(logging.DEBUG)


def read_dmi_data(key):
    return DMI.get(key)


dmi.read_dmi_data = read_dmi_data

# What went on the wire, as requests sent it (cloud-init's url_helper sits on requests).
real_send = requests.Session.send


def send(self, request, **kwargs):
    asked.append(
        {
            "method": request.method,
            "url": request.url,
            "token": "X-aws-ec2-metadata-token" in request.headers,
        }
    )
    return real_send(self, request, **kwargs)


requests.Session.send = send

from cloudinit.sources import DataSourceEc2, DataSourceNoCloud, DataSourceOpenStack  # noqa: E402

run = tempfile.mkdtemp(prefix="berth-ci-ds-")
paths = helpers.Paths({"cloud_dir": run + "/cloud", "run_dir": run + "/run"})
distro = distros.fetch("debian")("debian", {}, paths)
# Short waits: berth answers at once or not at all.
names = {"ec2": "Ec2", "ec2-aws": "Ec2", "openstack": "OpenStack", "nocloud-net": "NoCloud"}
sys_cfg = {
    "datasource_list": [names[source], "None"],
    "datasource": {
        "Ec2": {"max_wait": 10, "timeout": 5, "strict_id": "warn"},
        "OpenStack": {"max_wait": 10, "timeout": 5, "retries": 1},
    }
}
classes = {
    "ec2": DataSourceEc2.DataSourceEc2,
    "ec2-aws": DataSourceEc2.DataSourceEc2,
    "openstack": DataSourceOpenStack.DataSourceOpenStack,
    "nocloud-net": DataSourceNoCloud.DataSourceNoCloudNet,
}


def text(raw):
    return raw.decode() if isinstance(raw, bytes) else raw


ds = classes[source](sys_cfg, distro, paths)
found = ds.get_data()
out = {"source": source, "found": bool(found), "class": type(ds).__name__}
if found:
    out.update(
        {
            "instance_id": ds.get_instance_id(),
            "hostname": ds.get_hostname().hostname,
            "public_keys": sorted(ds.get_public_ssh_keys()),
            "user_data": text(ds.get_userdata_raw()),
            "vendor_data": text(ds.get_vendordata_raw()),
            "platform": ds.platform_type,
            "subplatform": ds.subplatform,
            "cloud_name": ds.cloud_name,
        }
    )
    if source.startswith("ec2"):
        out["api_version"] = ds._crawled_metadata.get("_metadata_api_version")
        out["availability_zone"] = ds.availability_zone
        out["region"] = ds.region
        out["has_token"] = bool(getattr(ds, "_api_token", None))
    if source == "openstack":
        out["uuid"] = ds.metadata.get("uuid")
        out["network_json"] = ds.network_json not in (None, "_unset")
out["asked"] = asked
out["problems"] = problems
json.dump(
    out,
    sys.stdout,
    default=lambda o: base64.b64encode(o).decode() if isinstance(o, bytes) else str(o),
)
