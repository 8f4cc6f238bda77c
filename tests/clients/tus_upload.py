"""tus-py-client (tuspy) against the box, for tests/tests/tus.rs.

Uploads FILE to the tus ENDPOINT with a bearer TOKEN, CHUNK bytes per
PATCH, each with an Upload-Checksum (tuspy's default, sha1, which tus
requires every server to take).
The upload URL is kept in STORE (tuspy's file URL storage, keyed by the
file's fingerprint), so a second run with the same STORE resumes the
upload from the offset a HEAD reports instead of starting over: that is
how the test resumes after killing the first run.

Prints, flushed, one line per step:
    start <offset> <url or ->     what the run starts from
    url <url>                     the upload's URL (created or resumed)
    offset <n>                    after each acknowledged PATCH
    done                          every byte acknowledged
usage: tus_upload.py ENDPOINT TOKEN FILE STORE METADATA_JSON CHUNK PAUSE_SECS
"""

import json
import sys
import time

from tusclient import client
from tusclient.storage import filestorage
from tusclient.uploader import Uploader


def main():
    endpoint, token, path, store, metadata, chunk, pause = sys.argv[1:8]
    tus = client.TusClient(endpoint, headers={"Authorization": f"Bearer {token}"})
    # The constructor looks the URL up in STORE and, when found, asks the
    # server for the offset (HEAD).
    up = Uploader(
        path,
        client=tus,
        chunk_size=int(chunk),
        metadata=json.loads(metadata),
        store_url=True,
        url_storage=filestorage.FileStorage(store),
        upload_checksum=True,
        retries=5,
        retry_delay=1,
    )
    print(f"start {up.offset} {up.url or '-'}", flush=True)
    if not up.url:
        up.set_url(up.create_url())
        up.offset = 0
    print(f"url {up.url}", flush=True)
    size = up.get_file_size()
    while up.offset < size:
        up.upload_chunk()
        print(f"offset {up.offset}", flush=True)
        time.sleep(float(pause))
    print("done", flush=True)


if __name__ == "__main__":
    main()
