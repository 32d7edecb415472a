"""The AWS SDK for Python's own IMDS client (botocore), run inside a guest.

Only botocore's public API is called: InstanceMetadataRegionFetcher's
retrieve_region() and InstanceMetadataFetcher's
retrieve_iam_role_credentials(), each of which does its own IMDSv2 token PUT
and sends the token with its reads. Run with Debian's /usr/bin/python3
(package python3-botocore). Prints one JSON object: what those calls return,
botocore's version and the base URL it used.
"""
import json
import sys

import botocore
from botocore.utils import InstanceMetadataFetcher, InstanceMetadataRegionFetcher

regions = InstanceMetadataRegionFetcher(timeout=5, num_attempts=2)
# The region botocore derives from placement/availability-zone/ (a leaf it
# asks for with a trailing slash), or None when it could not read it.
region = regions.retrieve_region()
# berth serves no IAM role: botocore must come back with no credentials ({}),
# never with something it took for credentials.
credentials = InstanceMetadataFetcher(timeout=5, num_attempts=2).retrieve_iam_role_credentials()
json.dump(
    {
        "botocore": botocore.__version__,
        "base_url": regions.get_base_url(),
        "region": region,
        "credentials": credentials,
    },
    sys.stdout,
)
