"""Secrets on the control plane: encrypted at rest, checked at FunctionCreate, only in ContainerHello."""
from __future__ import annotations

import os
import stat

import grpc
import pytest

from gpu_fabric.proto import client_pb2, common_pb2, worker_pb2
from gpu_fabric.proto import objects_pb2 as pb

from .conftest import RunningPlane
from .test_objects import Objects

VALUE = "s3cr3t-value-7f1e"


@pytest.fixture
def objects(plane):
    return Objects(plane)


def _app(plane, name="t"):
    req = client_pb2.AppCreateRequest(name=name, kind=client_pb2.APP_KIND_EPHEMERAL)
    return plane.client.AppCreate(req, metadata=plane.md).app_id


def _create_function(plane, app_id, secret_names, **spec_fields):
    spec = common_pb2.FunctionSpec(name="f", secret_names=secret_names, **spec_fields)
    definition = common_pb2.FunctionDefinition(kind=common_pb2.FunctionDefinition.KIND_SERIALIZED, pickled_function=b"x")
    req = client_pb2.FunctionCreateRequest(app_id=app_id, spec=spec, definition=definition)
    return plane.client.FunctionCreate(req, metadata=plane.md).function_id


def _container_hello(plane, app_id, secret_names):
    """Start one container of a function using `secret_names` and return its ContainerHello."""
    req = worker_pb2.WorkerRegisterRequest(
        hostname="t", python_version="3.11", provider="local",
        resources=worker_pb2.WorkerResources(cpu=2, memory_mb=4096),
    )
    worker_id = plane.worker.WorkerRegister(req, metadata=plane.md).worker_id
    _create_function(plane, app_id, secret_names, min_containers=1)
    stream = plane.worker.WorkerGetAssignments(worker_pb2.WorkerGetAssignmentsRequest(worker_id=worker_id), metadata=plane.md, timeout=10)
    try:
        container_id = next(iter(stream)).start.container_id
    finally:
        stream.cancel()
    return plane.container.ContainerHello(worker_pb2.ContainerHelloRequest(container_id=container_id), metadata=plane.md)


def _files_bytes(data_dir):
    out = b""
    for root, _, files in os.walk(data_dir):
        for name in files:
            with open(os.path.join(root, name), "rb") as fh:
                out += fh.read()
    return out


def test_secrets_are_encrypted_at_rest_and_never_listed_with_values(plane, objects, tmp_path):
    objects.SecretCreate(pb.SecretCreateRequest(name="hf", env={"HF_TOKEN": VALUE, "OTHER": "x"}))
    listed = objects.SecretList(pb.SecretListRequest()).secrets
    assert [(s.name, list(s.keys)) for s in listed] == [("hf", ["HF_TOKEN", "OTHER"])]
    assert VALUE not in str(listed)
    key_file = os.path.join(plane.plane.data_dir, "secrets.key")
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert VALUE.encode() not in _files_bytes(plane.plane.data_dir)
    with pytest.raises(grpc.RpcError) as err:
        objects.SecretCreate(pb.SecretCreateRequest(name="hf", env={"HF_TOKEN": "other"}))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS and "--force" in err.value.details()
    objects.SecretCreate(pb.SecretCreateRequest(name="hf", env={"HF_TOKEN": "new"}, overwrite=True))
    assert list(objects.SecretList(pb.SecretListRequest()).secrets[0].keys) == ["HF_TOKEN"]
    for bad in ({"1BAD": "x"}, {"GPUFABRIC_URL": "grpc://elsewhere:1"}, {}):
        with pytest.raises(grpc.RpcError) as err:
            objects.SecretCreate(pb.SecretCreateRequest(name="bad", env=bad))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    objects.SecretDelete(pb.SecretDeleteRequest(name="hf"))
    with pytest.raises(grpc.RpcError) as err:
        objects.SecretDelete(pb.SecretDeleteRequest(name="hf"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    objects.SecretDelete(pb.SecretDeleteRequest(name="hf", allow_missing=True))


def test_function_create_refuses_a_missing_secret_with_the_command_to_make_it(plane):
    with pytest.raises(grpc.RpcError) as err:
        _create_function(plane, _app(plane), ["nope"])
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "gpufabric secret create nope KEY=VALUE" in err.value.details()


def test_container_hello_carries_the_secret_env_later_secrets_winning(plane, objects):
    objects.SecretCreate(pb.SecretCreateRequest(name="a", env={"TOKEN": "from-a", "ONLY_A": "1"}))
    objects.SecretCreate(pb.SecretCreateRequest(name="b", env={"TOKEN": VALUE}))
    app_id = _app(plane)
    hello = _container_hello(plane, app_id, ["a", "b"])
    assert dict(hello.secret_env) == {"TOKEN": VALUE, "ONLY_A": "1"}
    assert VALUE not in str(hello.spec)  # the spec holds names only
    lookup = plane.client.AppList(client_pb2.AppListRequest(), metadata=plane.md)
    assert VALUE not in str(lookup)


def test_anonymous_secrets_belong_to_their_app_and_go_when_it_stops(plane, objects):
    app_id, other_app = _app(plane, "one"), _app(plane, "two")
    name = objects.SecretCreate(pb.SecretCreateRequest(app_id=app_id, env={"K": VALUE})).name
    assert name.startswith("_anon-") and VALUE not in name
    # Same app and values, same name (a redeploy keeps its spec); another app gets another one.
    assert objects.SecretCreate(pb.SecretCreateRequest(app_id=app_id, env={"K": VALUE})).name == name
    assert objects.SecretCreate(pb.SecretCreateRequest(app_id=other_app, env={"K": VALUE})).name != name
    assert objects.SecretList(pb.SecretListRequest()).secrets == []
    assert len(objects.SecretList(pb.SecretListRequest(include_anonymous=True)).secrets) == 2
    with pytest.raises(grpc.RpcError) as err:
        _create_function(plane, other_app, [name])
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    hello = _container_hello(plane, app_id, [name])
    assert dict(hello.secret_env) == {"K": VALUE}
    with pytest.raises(grpc.RpcError) as err:
        objects.SecretCreate(pb.SecretCreateRequest(app_id="ap-unknown", env={"K": "v"}))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    plane.client.AppStop(client_pb2.AppStopRequest(app_id=app_id), metadata=plane.md)
    plane.plane.objects._last_collect = 0
    names = [s.name for s in objects.SecretList(pb.SecretListRequest(include_anonymous=True)).secrets]
    assert name not in names and len(names) == 1


def test_secrets_survive_a_restart_and_a_lost_key_is_a_clear_error(tmp_path):
    data_dir = str(tmp_path / "fabric")
    plane = RunningPlane(data_dir)
    Objects(plane).SecretCreate(pb.SecretCreateRequest(name="s", env={"K": VALUE}))
    plane.stop()
    plane = RunningPlane(data_dir)
    try:
        app_id = _app(plane)
        assert dict(_container_hello(plane, app_id, ["s"]).secret_env) == {"K": VALUE}
        vault = plane.plane.objects.secrets
        vault._fernet = None
        os.unlink(vault.key_path)  # a new key is made, which cannot read the old values
        with pytest.raises(Exception, match="cannot be decrypted"):
            plane.run_in_loop(lambda: vault.env_for(["s"], app_id))
    finally:
        plane.stop()
