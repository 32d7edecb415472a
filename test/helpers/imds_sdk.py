"""The AWS SDK for Python's own IMDS client (botocore), run inside a guest.

Prints one JSON object: the region botocore derives from the availability
zone, the instance id fetched with botocore's IMDSv2 token flow, and the
status of a read without a token. botocore does the token PUT itself; this
script only calls its public fetchers and its request helper.
"""
import json
import sys

from botocore.utils import IMDSFetcher, InstanceMetadataRegionFetcher

fetcher = IMDSFetcher(timeout=5, num_attempts=2)
token = fetcher._fetch_metadata_token()
instance = fetcher._get_request(
    url_path="latest/meta-data/instance-id", retry_func=None, token=token
).text
region = InstanceMetadataRegionFetcher(timeout=5, num_attempts=2).retrieve_region()
try:
    fetcher._get_request(url_path="latest/meta-data/instance-id", retry_func=None, token=None)
    untokened = 200
except Exception as err:  # botocore raises on a non-200 answer
    untokened = str(err)
json.dump(
    {"token": bool(token), "instance": instance, "region": region, "untokened": untokened},
    sys.stdout,
)
