"""The ObjectBackend contract on all three backends, and the OCI backend's requests to Object Storage."""
from __future__ import annotations

import time

import pytest

from gpu_fabric.control_plane.volumes import OCIBackend, backend_from_url


def test_put_get_exists_delete(backend):
    assert backend.get("a/b") is None and not backend.exists("a/b")
    backend.put("a/b", b"one")
    backend.put("a/b", b"two")  # replaced whole
    assert backend.get("a/b") == b"two" and backend.exists("a/b")
    backend.put("a/empty", b"")
    assert backend.get("a/empty") == b"" and backend.exists("a/empty")
    backend.delete("a/b")
    backend.delete("a/b")  # a missing key is not an error
    assert backend.get("a/b") is None and not backend.exists("a/b")


def test_listing_pages_through_many_keys_with_sizes_and_times(backend):
    before = time.time() - 5
    keys = [f"vol/v/b/{i:03d}" for i in range(40)] + ["vol/v/HEAD", "vol/w/meta", "other"]
    for i, key in enumerate(keys):
        backend.put(key, b"x" * i)
    assert sorted(backend.list("vol/v/b/")) == sorted(keys[:40])
    assert sorted(backend.list("vol/")) == sorted(keys[:-1])
    infos = {info.key: info for info in backend.list_info("vol/v/")}
    assert set(infos) == set(keys[:41])
    assert all(infos[k].size == i for i, k in enumerate(keys[:41]))
    assert all(before <= info.mtime <= time.time() + 5 for info in infos.values())
    assert backend.children("vol/") == {"v", "w"} and backend.children("vol/v/") == {"b", "HEAD"}
    assert backend.children("nothing/") == set()


def test_delete_many(backend):
    for i in range(25):
        backend.put(f"k/{i}", b"x")
    backend.delete_many([f"k/{i}" for i in range(20)] + ["k/missing"])
    assert sorted(backend.list("k/")) == sorted(f"k/{i}" for i in range(20, 25))
    backend.delete_many([])


def test_keys_with_awkward_characters(backend):
    key = "vol/a b/c+d%e/ü.txt"
    backend.put(key, b"odd")
    assert backend.get(key) == b"odd" and list(backend.list("vol/a b/")) == [key]


# --- OCI: what goes over the wire ----------------------------------------------------------------

@pytest.fixture
def oci(oci_server, oci_config):
    return OCIBackend("vols", "fabric", client=oci_server.client(oci_config)), oci_server


def test_oci_looks_up_the_namespace_once_and_keeps_objects_under_the_prefix(oci):
    backend, server = oci
    backend.put("vol/v/meta", b"{}")
    assert backend.namespace == "fabricns"
    assert [op for op, _, _ in server.requests].count("GetNamespace") == 1
    assert list(server.objects["vols"]) == ["fabric/vol/v/meta"]
    given = OCIBackend("vols", client=backend.client, namespace="fabricns")
    assert given.prefix == "" and [op for op, _, _ in server.requests].count("GetNamespace") == 1


def test_oci_exists_is_a_head_request_not_a_download(oci):
    backend, server = oci
    backend.put("b/big", b"x" * 100_000)
    server.requests.clear()
    assert backend.exists("b/big") and not backend.exists("b/none")
    assert [op for op, _, _ in server.requests] == ["HeadObject", "HeadObject"]


def test_oci_list_asks_for_sizes_and_times_and_follows_next_start_with(oci):
    backend, server = oci
    for i in range(20):
        backend.put(f"b/{i:02d}", b"x")
    server.requests.clear()
    assert len(list(backend.list_info("b/"))) == 20
    lists = [q for op, _, q in server.requests if op == "ListObjects"]
    assert len(lists) == 3  # pages of 7
    assert all(q["prefix"] == "fabric/b/" and q["fields"] == "name,size,timeModified" for q in lists)
    assert "start" not in lists[0] and lists[1]["start"] == "fabric/b/07" and lists[2]["start"] == "fabric/b/14"


def test_oci_service_errors_other_than_404_are_raised(oci):
    import oci as oci_sdk

    backend, server = oci
    for operation, call in (("GetObject", lambda: backend.get("k")), ("HeadObject", lambda: backend.exists("k")),
                            ("DeleteObject", lambda: backend.delete("k")), ("PutObject", lambda: backend.put("k", b"x"))):
        server.fail[operation] = 503
        with pytest.raises(oci_sdk.exceptions.ServiceError) as err:
            call()
        assert err.value.status == 503


def test_oci_missing_bucket_is_a_configuration_error_not_a_missing_object(oci_server, oci_config):
    backend = OCIBackend("nosuch", client=oci_server.client(oci_config))
    with pytest.raises(OSError, match="no bucket 'nosuch' in namespace 'fabricns'"):
        backend.get("vol/v/meta")


def test_oci_requests_are_signed_with_the_configured_key(oci_server):
    import oci as oci_sdk

    from ._oci_server import make_config

    stranger = make_config()  # another key with the same key id: the signature does not verify
    with pytest.raises(oci_sdk.exceptions.ServiceError) as err:
        OCIBackend("vols", client=oci_server.client(stranger), namespace="fabricns").put("k", b"x")
    assert err.value.status == 401


def test_storage_urls(monkeypatch, oci_config, tmp_path):
    import oci as oci_sdk

    monkeypatch.setattr(oci_sdk.config, "from_file", lambda *a, **k: oci_config)
    backend = backend_from_url("oci://vols/fab/ric?namespace=ns", "")
    assert (backend.bucket, backend.prefix, backend.namespace) == ("vols", "fab/ric/", "ns")
    assert backend_from_url("", str(tmp_path / "d")).root == str(tmp_path / "d")
    with pytest.raises(ValueError, match="file://, s3:// or oci://"):
        backend_from_url("gs://bucket", "")


def test_oci_without_a_config_file_says_what_to_do(monkeypatch, tmp_path):
    pytest.importorskip("oci")
    monkeypatch.setenv("OCI_CONFIG_FILE", str(tmp_path / "no-such-config"))
    with pytest.raises(ValueError, match="OCI_CONFIG_FILE"):
        OCIBackend("vols", namespace="ns")
