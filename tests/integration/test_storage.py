import hashlib
import io
import uuid

import httpx
import pytest

from scriptorium.storage import ObjectStore, UploadTooLarge, page_image_key, raw_key


def test_stream_upload_hashes_and_sizes(store: ObjectStore) -> None:
    data = bytes(range(256)) * 50_000  # 12.8 MB: several reads, one multipart upload
    key = f"tests/{uuid.uuid4()}/blob"
    stored = store.put_stream(key, io.BytesIO(data), limit=len(data))
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert store.get_bytes(key) == data


def test_upload_over_the_limit_is_refused_and_removed(store: ObjectStore) -> None:
    key = f"tests/{uuid.uuid4()}/too-big"
    with pytest.raises(UploadTooLarge):
        store.put_stream(key, io.BytesIO(b"x" * 2048), limit=1024)
    assert not store.exists(key)


def test_presigned_links_download_without_credentials(store: ObjectStore) -> None:
    key = f"tests/{uuid.uuid4()}/page.png"
    store.put_bytes(key, b"png bytes", content_type="image/png")
    response = httpx.get(store.presigned_get(key), timeout=10)
    assert response.status_code == 200
    assert response.content == b"png bytes"


def test_delete_prefix_removes_everything_under_it(store: ObjectStore) -> None:
    prefix = f"tests/{uuid.uuid4()}/"
    for name in ("a", "b/c", "b/d"):
        store.put_bytes(prefix + name, b"1")
    assert store.delete_prefix(prefix) == 3
    assert not store.exists(prefix + "b/c")


def test_key_layout_is_per_tenant() -> None:
    tenant, document = uuid.uuid4(), uuid.uuid4()
    assert raw_key(tenant, document) == f"{tenant}/raw/{document}/source"
    assert page_image_key(tenant, document, 3) == f"{tenant}/pages/{document}/00003.png"
