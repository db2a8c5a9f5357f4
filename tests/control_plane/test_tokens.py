"""Workspaces and tokens: roles per RPC, workspace isolation, container tokens, revocation."""
from __future__ import annotations

import grpc
import pytest

from gpu_fabric.control_plane import _tokens
from gpu_fabric.control_plane._shared import open_token_table
from gpu_fabric.control_plane._tokens import Principal, TokenRegistry, required_grant
from gpu_fabric.proto import client_pb2, common_pb2, objects_pb2, objects_pb2_grpc, volumes_pb2, volumes_pb2_grpc, worker_pb2
from tests.pg_server import pg_url  # noqa: F401 - fixture

from .conftest import RunningPlane
from .test_protocol import _input, _register_worker


def _md(token):
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def team(tmp_path):
    """A running plane plus tokens of two workspaces (a, b) and one worker-join token."""
    data_dir = str(tmp_path / "fabric")
    table = open_token_table(data_dir)
    tokens = {f"{ws}-{role}": table.create(ws, role)[1] for ws in ("a", "b") for role in ("admin", "deploy", "invoke")}
    tokens["join"] = table.create("a", "worker-join")[1]
    table.close()
    running = RunningPlane(data_dir, heartbeat_timeout_s=5.0)
    yield running, tokens
    running.stop()


def _deploy(plane, token, name="shared-name"):
    app_id = plane.client.AppCreate(client_pb2.AppCreateRequest(name=name, kind=client_pb2.APP_KIND_DEPLOYED), metadata=_md(token)).app_id
    spec = common_pb2.FunctionSpec(name="f")
    definition = common_pb2.FunctionDefinition(kind=common_pb2.FunctionDefinition.KIND_SERIALIZED, pickled_function=b"x")
    fid = plane.client.FunctionCreate(client_pb2.FunctionCreateRequest(app_id=app_id, spec=spec, definition=definition), metadata=_md(token)).function_id
    return app_id, fid


def _code(fn):
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value.code()


def test_grants_per_method():
    assert required_grant("/gpu_fabric.v1.FabricWorker/WorkerRegister") == "worker"
    assert required_grant("/gpu_fabric.v1.FabricContainer/ContainerStream") == "container"
    assert required_grant("/gpu_fabric.v1.FabricClient/FunctionCreate") == "deploy"
    assert required_grant("/gpu_fabric.v1.FabricClient/FunctionMap") == "invoke"
    assert required_grant("/gpu_fabric.v1.FabricBilling/BillingReport") == "admin"
    assert required_grant("/gpu_fabric.v1.Unknown/Anything") == "admin"
    assert Principal("a", "worker-join").may("worker") and not Principal("a", "worker-join").may("invoke")
    assert not Principal("a", "invoke").may("deploy") and not Principal("a", "container").may("worker")


def test_tokens_are_stored_hashed_and_revocable(tmp_path):
    table = open_token_table(str(tmp_path))
    info, token = table.create("a", "invoke", "laptop")
    raw = open(tmp_path / "tokens.sqlite3", "rb").read() + (open(tmp_path / "tokens.sqlite3-wal", "rb").read() if (tmp_path / "tokens.sqlite3-wal").exists() else b"")
    assert token.encode() not in raw and _tokens.digest(token).encode() in raw
    now = [0.0]
    registry = TokenRegistry("fabric", table, clock=lambda: now[0])
    assert registry.resolve(f"Bearer {token}") == Principal("a", "invoke")
    assert registry.resolve("Bearer gft_nope_x") is None and registry.resolve("nonsense") is None
    assert registry.resolve("Bearer fabric") == Principal("main", "admin")
    assert table.revoke(info.token_id) and not table.revoke(info.token_id)
    now[0] += 10  # past the cache
    assert registry.resolve(f"Bearer {token}") is None
    assert [t.token_id for t in table.list(include_revoked=True)] == [info.token_id] and table.list() == []
    with pytest.raises(ValueError):
        table.create("Bad Name", "invoke")
    with pytest.raises(ValueError):
        table.create("a", "root")


def test_container_tokens_are_per_workspace(tmp_path):
    registry = TokenRegistry("fabric")
    token = registry.container_token("a")
    assert registry.resolve(f"Bearer {token}") == Principal("a", "container")
    assert registry.resolve(f"Bearer {token[:-1]}0") is None
    assert registry.resolve(f"Bearer {token.replace('_a_', '_b_')}") is None
    assert TokenRegistry("other").resolve(f"Bearer {token}") is None


def test_roles_are_enforced_per_rpc(team):
    plane, tokens = team
    hello = client_pb2.HelloRequest(client_version="0.1.0", python_version="3.11")
    plane.client.Hello(hello, metadata=_md(tokens["a-invoke"]))
    create = client_pb2.AppCreateRequest(name="x", kind=client_pb2.APP_KIND_DEPLOYED)
    assert _code(lambda: plane.client.AppCreate(create, metadata=_md(tokens["a-invoke"]))) == grpc.StatusCode.PERMISSION_DENIED
    # A worker join token registers a worker and does nothing else.
    assert _code(lambda: plane.client.Hello(hello, metadata=_md(tokens["join"]))) == grpc.StatusCode.PERMISSION_DENIED
    req = worker_pb2.WorkerRegisterRequest(hostname="h", python_version="3.11", provider="local",
                                           resources=worker_pb2.WorkerResources(cpu=1, memory_mb=512))
    assert plane.worker.WorkerRegister(req, metadata=_md(tokens["join"])).worker_id
    assert _code(lambda: plane.worker.WorkerRegister(req, metadata=_md(tokens["a-deploy"]))) == grpc.StatusCode.PERMISSION_DENIED
    assert _code(lambda: plane.client.Hello(hello, metadata=_md("gft_forged_token"))) == grpc.StatusCode.UNAUTHENTICATED


def test_workspace_a_cannot_see_or_touch_workspace_b(team):
    plane, tokens = team
    a_app, a_fn = _deploy(plane, tokens["a-deploy"])
    b_app, b_fn = _deploy(plane, tokens["b-deploy"])  # the same name in another workspace: another app
    assert a_app != b_app
    b = _md(tokens["b-admin"])
    listed = plane.client.AppList(client_pb2.AppListRequest(include_stopped=True), metadata=b).apps
    assert [app.app_id for app in listed] == [b_app]
    lookup = plane.client.FunctionLookup(client_pb2.FunctionLookupRequest(app_name="shared-name", function_name="f"), metadata=b)
    assert lookup.function_id == b_fn
    call = plane.client.FunctionMap(client_pb2.FunctionMapRequest(function_id=a_fn, kind=client_pb2.CALL_KIND_SPAWN,
                                                                  inputs=[_input(1)], closed=True), metadata=_md(tokens["a-invoke"]))
    not_found = grpc.StatusCode.NOT_FOUND
    attempts = [
        lambda: plane.client.FunctionMap(client_pb2.FunctionMapRequest(function_id=a_fn, kind=client_pb2.CALL_KIND_SPAWN, closed=True), metadata=b),
        lambda: plane.client.FunctionInvoke(client_pb2.FunctionInvokeRequest(function_id=a_fn, input=_input(1), timeout_s=0), metadata=b),
        lambda: plane.client.FunctionBindParams(client_pb2.FunctionBindParamsRequest(function_id=a_fn), metadata=b),
        lambda: plane.client.FunctionGetOutputs(client_pb2.FunctionGetOutputsRequest(call_id=call.call_id), metadata=b),
        lambda: plane.client.FunctionPutInputs(client_pb2.FunctionPutInputsRequest(call_id=call.call_id), metadata=b),
        lambda: plane.client.FunctionCallGetInfo(client_pb2.FunctionCallGetInfoRequest(call_id=call.call_id), metadata=b),
        lambda: plane.client.FunctionCallCancel(client_pb2.FunctionCallCancelRequest(call_id=call.call_id), metadata=b),
        lambda: plane.client.AppHeartbeat(client_pb2.AppHeartbeatRequest(app_id=a_app), metadata=b),
        lambda: plane.client.AppStop(client_pb2.AppStopRequest(app_id=a_app), metadata=b),
        lambda: plane.client.AppScheduleHistory(client_pb2.AppScheduleHistoryRequest(app_id=a_app), metadata=b),
        lambda: list(plane.client.AppGetLogs(client_pb2.AppGetLogsRequest(app_id=a_app), metadata=b)),
        lambda: plane.client.FunctionCreate(client_pb2.FunctionCreateRequest(
            app_id=a_app, spec=common_pb2.FunctionSpec(name="evil"),
            definition=common_pb2.FunctionDefinition(kind=common_pb2.FunctionDefinition.KIND_SERIALIZED, pickled_function=b"x")), metadata=b),
    ]
    for attempt in attempts:
        assert _code(attempt) == not_found
    # Workspace a still has everything, untouched.
    info = plane.client.FunctionCallGetInfo(client_pb2.FunctionCallGetInfoRequest(call_id=call.call_id), metadata=_md(tokens["a-invoke"]))
    assert not info.cancelled and plane.engine.apps[a_app].state == client_pb2.APP_STATE_DEPLOYED


def test_containers_get_a_container_token_of_their_workspace(team):
    plane, tokens = team
    _, fid = _deploy(plane, tokens["a-deploy"], name="svc")
    wid = _register_worker(plane)
    plane.client.FunctionMap(client_pb2.FunctionMapRequest(function_id=fid, kind=client_pb2.CALL_KIND_SPAWN,
                                                           inputs=[_input(2)], closed=True), metadata=_md(tokens["a-invoke"]))
    stream = plane.worker.WorkerGetAssignments(worker_pb2.WorkerGetAssignmentsRequest(worker_id=wid), metadata=plane.md, timeout=5)
    assignment = next(iter(stream))
    stream.cancel()
    token = assignment.start.container_token
    assert token.startswith("gfc_a_") and token != "secret-token"
    hello = plane.container.ContainerHello(worker_pb2.ContainerHelloRequest(container_id=assignment.start.container_id), metadata=_md(token))
    assert hello.function_id == fid
    # It cannot act as a worker, deploy, or bill.
    req = worker_pb2.WorkerRegisterRequest(hostname="h", python_version="3.11", resources=worker_pb2.WorkerResources(cpu=1, memory_mb=1))
    assert _code(lambda: plane.worker.WorkerRegister(req, metadata=_md(token))) == grpc.StatusCode.PERMISSION_DENIED
    create = client_pb2.AppCreateRequest(name="x", kind=client_pb2.APP_KIND_DEPLOYED)
    assert _code(lambda: plane.client.AppCreate(create, metadata=_md(token))) == grpc.StatusCode.PERMISSION_DENIED
    # A container token of workspace b does not reach a's container.
    other = plane.plane.tokens.container_token("b")
    assert _code(lambda: plane.container.ContainerHello(worker_pb2.ContainerHelloRequest(
        container_id=assignment.start.container_id), metadata=_md(other))) == grpc.StatusCode.NOT_FOUND


# --- Dicts, Queues, secrets and volumes per workspace, on SQLite and PostgreSQL
@pytest.fixture(params=["sqlite", "postgres"])
def team_db(request, tmp_path):
    """Like `team`, on either state store (the PostgreSQL one needs a server: tests/pg_server.py)."""
    database = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    data_dir = str(tmp_path / "fabric")
    table = open_token_table(data_dir, database)
    tokens = {f"{ws}-{role}": table.create(ws, role)[1] for ws in ("a", "b") for role in ("deploy", "invoke")}
    table.close()
    running = RunningPlane(data_dir, heartbeat_timeout_s=5.0, database=database)
    yield running, tokens
    running.stop()


def _fill(plane, objects, volumes, md, who):
    """Dict, Queue, secret and volume `shared` of the token's workspace, each holding `who`."""
    get = objects_pb2.ObjectGetOrCreateRequest
    dict_id = objects.ObjectGetOrCreate(get(kind=objects_pb2.OBJECT_KIND_DICT, name="shared", create_if_missing=True), metadata=md).object_id
    objects.DictPut(objects_pb2.DictPutRequest(object_id=dict_id, entries=[objects_pb2.DictEntry(key=b"k", value=who)]), metadata=md)
    queue_id = objects.ObjectGetOrCreate(get(kind=objects_pb2.OBJECT_KIND_QUEUE, name="shared", create_if_missing=True), metadata=md).object_id
    objects.QueuePut(objects_pb2.QueuePutRequest(object_id=queue_id, values=[who]), metadata=md)
    objects.SecretCreate(objects_pb2.SecretCreateRequest(name="shared", env={"WHO": who.decode()}), metadata=md)
    volumes.VolumeGetOrCreate(volumes_pb2.VolumeGetOrCreateRequest(name="shared", create_if_missing=True), metadata=md)
    digest = volumes.VolumePutBlocks(volumes_pb2.VolumePutBlocksRequest(name="shared", blocks=[who]), metadata=md).hashes[0]
    volumes.VolumeCommit(volumes_pb2.VolumeCommitRequest(name="shared", puts=[volumes_pb2.VolumeFile(
        path="who", size=len(who), blocks=[digest], mode=0o644)]), metadata=md)
    return dict_id, queue_id, digest


def _seen(objects, volumes, md, secrets=True):
    """What a token's workspace sees by name: (dict value, queue items, secrets, volumes, the volume's data)."""
    get = objects_pb2.ObjectGetOrCreateRequest
    dict_id = objects.ObjectGetOrCreate(get(kind=objects_pb2.OBJECT_KIND_DICT, name="shared"), metadata=md).object_id
    queue_id = objects.ObjectGetOrCreate(get(kind=objects_pb2.OBJECT_KIND_QUEUE, name="shared"), metadata=md).object_id
    items = objects.QueueNextItems(objects_pb2.QueueNextItemsRequest(object_id=queue_id), metadata=md).items
    listed = objects.SecretList(objects_pb2.SecretListRequest(include_anonymous=True), metadata=md).secrets if secrets else []
    manifest = volumes.VolumeGetManifest(volumes_pb2.VolumeGetManifestRequest(name="shared"), metadata=md)
    return (objects.DictGet(objects_pb2.DictGetRequest(object_id=dict_id, key=b"k"), metadata=md).value,
            [i.value for i in items],
            [(s.name, list(s.keys)) for s in listed],
            [(v.name, v.files) for v in volumes.VolumeList(volumes_pb2.VolumeListRequest(), metadata=md).volumes],
            [volumes.VolumeGetBlock(volumes_pb2.VolumeGetBlockRequest(name="shared", hash=f.blocks[0]), metadata=md).data
             for f in manifest.files])


def test_objects_secrets_and_volumes_are_per_workspace(team_db):
    plane, tokens = team_db
    objects = objects_pb2_grpc.FabricObjectsStub(plane.channel)
    volumes = volumes_pb2_grpc.FabricVolumesStub(plane.channel)
    a, b, main = _md(tokens["a-deploy"]), _md(tokens["b-deploy"]), plane.md
    a_dict, a_queue, a_block = _fill(plane, objects, volumes, a, b"a")
    b_dict, b_queue, _ = _fill(plane, objects, volumes, b, b"b")
    _fill(plane, objects, volumes, main, b"main")  # the default workspace: names stored as before
    assert len({a_dict, b_dict}) == 2 and a_queue != b_queue
    for md, who in ((a, b"a"), (b, b"b"), (main, b"main")):
        assert _seen(objects, volumes, md) == (who, [who], [("shared", ["WHO"])], [("shared", 1)], [who])
        listed = objects.ObjectList(objects_pb2.ObjectListRequest(kind=objects_pb2.OBJECT_KIND_DICT), metadata=md).objects
        assert [o.name for o in listed] == ["shared"]
    # Ids of another workspace's objects: NOT_FOUND through every RPC that takes one.
    attempts = [
        lambda: objects.DictGet(objects_pb2.DictGetRequest(object_id=a_dict, key=b"k"), metadata=b),
        lambda: objects.DictPut(objects_pb2.DictPutRequest(object_id=a_dict, entries=[objects_pb2.DictEntry(key=b"k", value=b"x")]), metadata=b),
        lambda: objects.DictPop(objects_pb2.DictPopRequest(object_id=a_dict, key=b"k"), metadata=b),
        lambda: objects.DictContains(objects_pb2.DictContainsRequest(object_id=a_dict, key=b"k"), metadata=b),
        lambda: objects.DictLen(objects_pb2.DictLenRequest(object_id=a_dict), metadata=b),
        lambda: objects.DictContents(objects_pb2.DictContentsRequest(object_id=a_dict), metadata=b),
        lambda: objects.DictClear(objects_pb2.DictClearRequest(object_id=a_dict), metadata=b),
        lambda: objects.QueuePut(objects_pb2.QueuePutRequest(object_id=a_queue, values=[b"x"]), metadata=b),
        lambda: objects.QueueGet(objects_pb2.QueueGetRequest(object_id=a_queue), metadata=b),
        lambda: objects.QueueLen(objects_pb2.QueueLenRequest(object_id=a_queue, total=True), metadata=b),
        lambda: objects.QueueNextItems(objects_pb2.QueueNextItemsRequest(object_id=a_queue), metadata=b),
        lambda: objects.QueueClear(objects_pb2.QueueClearRequest(object_id=a_queue, all=True), metadata=b),
        lambda: objects.ObjectDelete(objects_pb2.ObjectDeleteRequest(object_id=a_dict), metadata=b),
        lambda: objects.ObjectDelete(objects_pb2.ObjectDeleteRequest(object_id=a_queue), metadata=main),
        lambda: objects.DictGet(objects_pb2.DictGetRequest(object_id=a_dict, key=b"k"), metadata=main),
        lambda: objects.DictGet(objects_pb2.DictGetRequest(object_id=b_dict, key=b"k"), metadata=a),
        # Another workspace's volume block, by its hash, and names that try to reach across.
        lambda: volumes.VolumeGetBlock(volumes_pb2.VolumeGetBlockRequest(name="shared", hash=a_block), metadata=b),
        lambda: objects.ObjectDelete(objects_pb2.ObjectDeleteRequest(kind=objects_pb2.OBJECT_KIND_DICT, name="a/shared"), metadata=main),
        lambda: objects.SecretDelete(objects_pb2.SecretDeleteRequest(name="a/shared"), metadata=main),
    ]
    for attempt in attempts:
        assert _code(attempt) == grpc.StatusCode.NOT_FOUND
    for attempt in [lambda: volumes.VolumeGetManifest(volumes_pb2.VolumeGetManifestRequest(name="a/shared"), metadata=main),
                    lambda: volumes.VolumeDelete(volumes_pb2.VolumeDeleteRequest(name="a/shared"), metadata=b)]:
        assert _code(attempt) in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
    # An ephemeral Dict is its workspace's too, and listed nowhere.
    eph = objects.ObjectGetOrCreate(objects_pb2.ObjectGetOrCreateRequest(kind=objects_pb2.OBJECT_KIND_DICT, ephemeral=True), metadata=a).object_id
    objects.DictPut(objects_pb2.DictPutRequest(object_id=eph, entries=[objects_pb2.DictEntry(key=b"k", value=b"e")]), metadata=a)
    assert _code(lambda: objects.DictLen(objects_pb2.DictLenRequest(object_id=eph), metadata=b)) == grpc.StatusCode.NOT_FOUND
    assert [o.name for o in objects.ObjectList(objects_pb2.ObjectListRequest(kind=objects_pb2.OBJECT_KIND_DICT), metadata=a).objects] == ["shared"]
    # b deletes its own by name; a's are untouched.
    objects.ObjectDelete(objects_pb2.ObjectDeleteRequest(kind=objects_pb2.OBJECT_KIND_DICT, name="shared"), metadata=b)
    objects.ObjectDelete(objects_pb2.ObjectDeleteRequest(kind=objects_pb2.OBJECT_KIND_QUEUE, name="shared"), metadata=b)
    objects.SecretDelete(objects_pb2.SecretDeleteRequest(name="shared"), metadata=b)
    volumes.VolumeDelete(volumes_pb2.VolumeDeleteRequest(name="shared"), metadata=b)
    assert _seen(objects, volumes, a) == (b"a", [b"a"], [("shared", ["WHO"])], [("shared", 1)], [b"a"])
    assert objects.SecretList(objects_pb2.SecretListRequest(), metadata=b).secrets == []
    assert volumes.VolumeList(volumes_pb2.VolumeListRequest(), metadata=b).volumes == []
    # A function may only name its own workspace's secrets; its container gets those values.
    spec = common_pb2.FunctionSpec(name="f", secret_names=["shared"])
    definition = common_pb2.FunctionDefinition(kind=common_pb2.FunctionDefinition.KIND_SERIALIZED, pickled_function=b"x")
    b_app = plane.client.AppCreate(client_pb2.AppCreateRequest(name="s", kind=client_pb2.APP_KIND_DEPLOYED), metadata=b).app_id
    assert _code(lambda: plane.client.FunctionCreate(client_pb2.FunctionCreateRequest(app_id=b_app, spec=spec, definition=definition),
                                                     metadata=b)) == grpc.StatusCode.NOT_FOUND
    a_app = plane.client.AppCreate(client_pb2.AppCreateRequest(name="s", kind=client_pb2.APP_KIND_DEPLOYED), metadata=a).app_id
    fid = plane.client.FunctionCreate(client_pb2.FunctionCreateRequest(app_id=a_app, spec=spec, definition=definition), metadata=a).function_id
    wid = _register_worker(plane)
    plane.client.FunctionMap(client_pb2.FunctionMapRequest(function_id=fid, kind=client_pb2.CALL_KIND_SPAWN,
                                                           inputs=[_input(2)], closed=True), metadata=a)
    stream = plane.worker.WorkerGetAssignments(worker_pb2.WorkerGetAssignmentsRequest(worker_id=wid), metadata=plane.md, timeout=5)
    assignment = next(iter(stream))
    stream.cancel()
    container = _md(assignment.start.container_token)
    hello = plane.container.ContainerHello(worker_pb2.ContainerHelloRequest(container_id=assignment.start.container_id), metadata=container)
    assert dict(hello.secret_env) == {"WHO": "a"}
    # The container's own Dict/Queue/volume calls land in its app's workspace.
    assert _seen(objects, volumes, container, secrets=False) == (b"a", [b"a"], [], [("shared", 1)], [b"a"])
    assert _code(lambda: objects.DictGet(objects_pb2.DictGetRequest(object_id=b_dict, key=b"k"), metadata=container)) == grpc.StatusCode.NOT_FOUND
