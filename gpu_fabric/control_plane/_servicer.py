"""gRPC servicers: translate the client, worker and container APIs into engine calls."""
from __future__ import annotations

import asyncio
import functools
import os
import time
import uuid

import grpc

from gpu_fabric.proto import client_pb2, client_pb2_grpc, worker_pb2, worker_pb2_grpc

from ._engine import Engine, FabricError

SERVER_VERSION = "0.1.0"
INLINE_LIMIT = 2 * 1024 * 1024
MAX_PAYLOAD = 8 * 1024 * 1024 * 1024
MAX_INPUTS_PER_BATCH = 1000
LONG_POLL_MAX_S = 55.0
BLOB_CHUNK = 1024 * 1024


def _status(func):
    """Turn FabricError into the gRPC status it names."""

    @functools.wraps(func)
    async def wrapper(self, request, context):
        try:
            return await func(self, request, context)
        except FabricError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.code), str(exc))

    return wrapper


def _status_stream(func):
    @functools.wraps(func)
    async def wrapper(self, request, context):
        try:
            async for item in func(self, request, context):
                yield item
        except FabricError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.code), str(exc))

    return wrapper


def _poll_timeout(value: float) -> float:
    if value < 0:
        raise FabricError("INVALID_ARGUMENT", "timeout_s must be >= 0")
    return min(value, LONG_POLL_MAX_S)


class ClientServicer(client_pb2_grpc.FabricClientServicer):
    def __init__(self, engine: Engine, blob_dir: str, *, max_payload: int = MAX_PAYLOAD, secrets=None):
        self.engine = engine
        self.secrets = secrets  # _secrets.SecretVault: FunctionCreate refuses unknown secret names
        self.blob_dir = blob_dir
        self.max_payload = max_payload
        os.makedirs(blob_dir, exist_ok=True)

    @_status
    async def Hello(self, request, context):
        return client_pb2.HelloResponse(
            server_version=SERVER_VERSION, default_python_version=self.engine.default_python,
            inline_limit_bytes=INLINE_LIMIT, max_payload_bytes=self.max_payload,
            max_inputs_per_batch=MAX_INPUTS_PER_BATCH, workspace="main",
        )

    @_status
    async def AppCreate(self, request, context):
        app = self.engine.create_app(request.name, request.kind, request.detach)
        return client_pb2.AppCreateResponse(app_id=app.app_id, heartbeat_timeout_s=self.engine.app_heartbeat_timeout_s)

    @_status
    async def AppHeartbeat(self, request, context):
        self.engine.heartbeat_app(request.app_id)
        return client_pb2.Empty()

    @_status
    async def AppStop(self, request, context):
        if not request.app_id and not request.name:
            raise FabricError("INVALID_ARGUMENT", "name the app to stop by id or name")
        self.engine.stop_app(self.engine.find_app(request.app_id, request.name))
        return client_pb2.Empty()

    @_status
    async def AppList(self, request, context):
        apps = []
        for app in sorted(self.engine.apps.values(), key=lambda a: a.created_at):
            if (app.state == client_pb2.APP_STATE_STOPPED and not request.include_stopped) or not self.engine.owned(app.app_id):
                continue
            running = sum(len(f.containers) for f in self.engine.functions.values() if f.app_id == app.app_id)
            apps.append(client_pb2.AppInfo(
                app_id=app.app_id, name=app.name, kind=app.kind, state=app.state, created_at=app.created_at,
                stopped_at=app.stopped_at, function_names=sorted(app.function_ids), running_containers=running,
                version=app.version,
            ))
        return client_pb2.AppListResponse(apps=apps)

    @_status_stream
    async def AppGetLogs(self, request, context):
        app = self.engine.find_app(request.app_id, request.app_name)
        cursor = request.cursor
        while True:
            entries = self.engine.logs_after(app, cursor)
            stopped = app.state == client_pb2.APP_STATE_STOPPED
            if entries:
                cursor = entries[-1].seq
                yield client_pb2.LogBatch(entries=entries)
                continue
            if stopped or not request.follow:
                yield client_pb2.LogBatch(app_done=stopped)
                return
            await app.log_notifier.wait(15.0)

    @_status
    async def AppScheduleHistory(self, request, context):
        app = self.engine.find_app(request.app_id, request.app_name)
        runs = [
            client_pb2.ScheduleRun(
                function_name=name, tick=r.tick, call_id=r.call_id, started_at=r.started_at,
                finished_at=r.finished_at, status=r.status, error=r.error,
            )
            for name, r in self.engine.schedule_history(app, request.limit or 100)
        ]
        return client_pb2.AppScheduleHistoryResponse(runs=runs)

    @_status
    async def FunctionCreate(self, request, context):
        if self.secrets is not None:  # a missing secret fails here, not when a container starts
            self.secrets.check_names(request.spec.secret_names, request.app_id)
        fn = self.engine.create_function(request.app_id, request.spec, request.definition)
        return client_pb2.FunctionCreateResponse(function_id=fn.function_id, container_python_version=self.engine.container_python(fn))

    @_status
    async def FunctionLookup(self, request, context):
        fn = self.engine.lookup_function(request.app_name, request.function_name)
        return client_pb2.FunctionLookupResponse(
            function_id=fn.function_id, spec=fn.spec, app_id=fn.app_id, container_python_version=self.engine.container_python(fn)
        )

    @_status
    async def FunctionBindParams(self, request, context):
        if self.secrets is not None and request.has_options:  # with_options(secrets=...) names exist
            self.secrets.check_names(request.options.secret_names, self.engine.function(request.function_id).app_id)
        fn = self.engine.bind_params(request.function_id, request.pickled_params, request.options, request.has_options)
        return client_pb2.FunctionBindParamsResponse(function_id=fn.function_id)

    def _check_batch(self, inputs) -> None:
        if len(inputs) > MAX_INPUTS_PER_BATCH:
            raise FabricError("INVALID_ARGUMENT", f"at most {MAX_INPUTS_PER_BATCH} inputs per request; split the batch")

    @_status
    async def FunctionMap(self, request, context):
        self._check_batch(request.inputs)
        if request.kind not in (client_pb2.CALL_KIND_MAP, client_pb2.CALL_KIND_SPAWN, client_pb2.CALL_KIND_REMOTE):
            raise FabricError("INVALID_ARGUMENT", "call kind must be REMOTE, MAP or SPAWN")
        call = self.engine.create_call(request.function_id, request.kind)
        ids = self.engine.put_inputs(call, request.inputs, request.closed, new_call=True)
        await self.engine.durable()
        return client_pb2.FunctionMapResponse(call_id=call.call_id, input_ids=ids)

    @_status
    async def FunctionPutInputs(self, request, context):
        self._check_batch(request.inputs)
        call = self.engine.call(request.call_id)
        ids = self.engine.put_inputs(call, request.inputs, request.closed, new_call=False)
        await self.engine.durable()
        return client_pb2.FunctionPutInputsResponse(input_ids=ids)

    @_status
    async def FunctionInvoke(self, request, context):
        return await self._invoke(request)

    @_status_stream
    async def FunctionInvokeStream(self, request_iterator, context):
        async for request in request_iterator:
            yield await self._invoke(request)

    async def _invoke(self, request):
        call = self.engine.create_call(request.function_id, client_pb2.CALL_KIND_REMOTE)
        self.engine.put_inputs(call, [request.input], True, new_call=True)
        deadline = time.monotonic() + _poll_timeout(request.timeout_s)
        while not call.outputs:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                await self.engine.durable()
                return client_pb2.FunctionInvokeResponse(call_id=call.call_id)
            await call.notifier.wait(remaining)
        await self.engine.durable()
        self.engine.mark_read(call)
        return client_pb2.FunctionInvokeResponse(call_id=call.call_id, output=next(iter(call.outputs.values())))

    @_status
    async def FunctionGetOutputs(self, request, context):
        call = self.engine.call(request.call_id)
        self.engine.ack_outputs(call, request.cursor)
        max_items = request.max_items or 1000
        deadline = time.monotonic() + _poll_timeout(request.timeout_s)
        while True:
            outputs = self.engine.outputs_after(call, request.cursor, max_items)
            done = call.closed and call.num_done >= call.num_inputs
            remaining = deadline - time.monotonic()
            if outputs or done or remaining <= 0:
                if outputs:
                    # Hand out only committed outputs: after a crash the call's seq restarts from what
                    # was stored, and an output the caller saw but the store lost would reuse a seq
                    # at or below the caller's cursor, so the caller would never see its rerun.
                    await self.engine.durable()
                return client_pb2.FunctionGetOutputsResponse(
                    outputs=outputs, num_inputs=call.num_inputs, num_done=call.num_done, closed=call.closed, cancelled=call.cancelled
                )
            await call.notifier.wait(remaining)

    @_status
    async def FunctionCallCancel(self, request, context):
        self.engine.cancel_call(self.engine.call(request.call_id), request.terminate_containers)
        return client_pb2.Empty()

    @_status
    async def FunctionCallGetInfo(self, request, context):
        call = self.engine.call(request.call_id)
        fn = self.engine.functions[call.function_id]
        return client_pb2.FunctionCallInfo(
            call_id=call.call_id, function_id=call.function_id, kind=call.kind, num_inputs=call.num_inputs,
            num_done=call.num_done, closed=call.closed, cancelled=call.cancelled, function_name=fn.name, app_id=fn.app_id,
        )

    @_status
    async def FunctionCallGetUsage(self, request, context):
        # An attempt is charged in the same event-loop step that makes its output readable, so a
        # caller that has read an output sees its usage; NOT_FOUND rules are GetInfo's (engine.call).
        return self.engine.call_usage(self.engine.call(request.call_id))

    async def BlobPut(self, request_iterator, context):
        blob_id = "bl-" + uuid.uuid4().hex
        tmp = os.path.join(self.blob_dir, blob_id + ".part")
        expected, written = -1, 0
        try:
            with open(tmp, "wb") as f:
                async for chunk in request_iterator:
                    if expected < 0:
                        expected = chunk.total_size
                        if expected > self.max_payload:
                            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"blob of {expected:,} bytes is over the {self.max_payload:,}-byte limit")
                    written += len(chunk.data)
                    if written > self.max_payload:
                        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"blob is over the {self.max_payload:,}-byte limit")
                    f.write(chunk.data)
            if expected >= 0 and written != expected:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"blob ended after {written} of {expected} bytes; upload it again")
            os.replace(tmp, os.path.join(self.blob_dir, blob_id))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return client_pb2.BlobPutResponse(blob_id=blob_id)

    async def BlobGet(self, request, context):
        name = request.blob_id
        if not name.startswith("bl-") or not name[3:].isalnum():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed blob id")
        path = os.path.join(self.blob_dir, name)
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"blob {name} not found (expired?)")
        with f:
            size = os.fstat(f.fileno()).st_size
            first = True
            while True:
                data = f.read(BLOB_CHUNK)
                if not data and not first:
                    return
                yield client_pb2.BlobChunk(data=data, total_size=size if first else 0)
                first = False
                if not data:
                    return


class WorkerServicer(worker_pb2_grpc.FabricWorkerServicer):
    def __init__(self, engine: Engine):
        self.engine = engine

    @_status
    async def WorkerRegister(self, request, context):
        worker = self.engine.register_worker(request)
        return worker_pb2.WorkerRegisterResponse(
            worker_id=worker.worker_id, heartbeat_interval_s=self.engine.heartbeat_interval_s,
            heartbeat_timeout_s=self.engine.heartbeat_timeout_s,
        )

    @_status
    async def WorkerHeartbeat(self, request, context):
        worker = self.engine.workers.get(request.worker_id)
        if worker is None:
            return worker_pb2.WorkerHeartbeatResponse(known=False)
        worker.last_heartbeat = self.engine.clock()
        return worker_pb2.WorkerHeartbeatResponse(known=True)

    @_status_stream
    async def WorkerGetAssignments(self, request, context):
        worker = self.engine.worker(request.worker_id)
        while self.engine.workers.get(worker.worker_id) is worker:
            try:
                assignment = await asyncio.wait_for(worker.assignments.get(), timeout=5.0)
            except asyncio.TimeoutError:
                continue
            yield assignment

    @_status
    async def WorkerContainerExited(self, request, context):
        self.engine.container_exited(request.worker_id, request)
        return client_pb2.Empty()

    @_status
    async def WorkerPutLogs(self, request, context):
        by_app: dict[str, list] = {}
        for entry in request.entries:
            app_id = entry.app_id
            if not app_id:
                container = self.engine.container(entry.container_id)
                app_id = container.app_id if container else ""
            if app_id:
                by_app.setdefault(app_id, []).append(entry)
        for app_id, entries in by_app.items():
            self.engine.append_logs(app_id, entries)
        return client_pb2.Empty()

    @_status
    async def WorkerPreemptionNotice(self, request, context):
        self.engine.preemption_notice(self.engine.worker(request.worker_id), request.deadline_s, request.reason)
        return client_pb2.Empty()


class ContainerServicer(worker_pb2_grpc.FabricContainerServicer):
    def __init__(self, engine: Engine, secrets=None):
        self.engine = engine
        self.secrets = secrets  # _secrets.SecretVault: decrypted only into ContainerHello.secret_env

    @_status
    async def ContainerHello(self, request, context):
        container = self.engine.container(request.container_id)
        if container is None:
            raise FabricError("NOT_FOUND", f"container {request.container_id!r} is not known")
        fn = self.engine.functions[container.function_id]
        app = self.engine.apps[fn.app_id]
        return worker_pb2.ContainerHelloResponse(
            function_id=fn.function_id, app_id=fn.app_id, spec=fn.spec, definition=fn.definition,
            app_function_ids=dict(app.function_ids),
            secret_env=self.secrets.env_for(fn.spec.secret_names, fn.app_id, app.workspace) if self.secrets is not None else {},
        )

    def _app_of_logs(self, container, request) -> str:
        if container is not None:
            return container.app_id
        for entry in request.logs:
            rec = self.engine.inputs.get(entry.input_id)
            if rec is not None:
                return self.engine.functions[rec.function_id].app_id
        return ""

    @_status
    async def ContainerExchange(self, request, context):
        return await self._exchange(request)

    @_status_stream
    async def ContainerStream(self, request_iterator, context):
        async for request in request_iterator:
            yield await self._exchange(request)

    async def _exchange(self, request):
        engine = self.engine
        container = engine.container(request.container_id)
        if request.logs:
            app_id = self._app_of_logs(container, request)
            if app_id:
                engine.append_logs(app_id, list(request.logs))
        if request.init_failure.status and container is not None:
            engine.init_failed(engine.functions[container.function_id], request.init_failure)
            container.shutdown = True
            return worker_pb2.ContainerExchangeResponse(shutdown=True)
        for out in request.outputs:
            engine.container_output(container, out.input_id, out.result, out.duration_s)
        if container is None:
            # Unknown (the control plane restarted): its outputs were taken; it should go.
            return worker_pb2.ContainerExchangeResponse(shutdown=True)
        fn = engine.functions[container.function_id]
        if request.ready and not container.ready:
            container.ready = True
            fn.start_failures = 0
            charge = engine.ledger.open.get(container.container_id)
            if charge is not None and request.start_kind:  # for the metrics (web/_metrics.py)
                charge.start_kind = request.start_kind
        cancelled, container.cancelled = container.cancelled, []
        taken = []
        if request.max_inputs > 0 and not container.shutdown:
            taken = engine._take(fn, container, request.max_inputs)
            if not taken:
                if not container.held:
                    container.idle_since = engine.clock()
                taken = await self._wait_for_inputs(container, request.max_inputs, _poll_timeout(request.timeout_s))
                if engine.containers.get(container.container_id) is not container:
                    return worker_pb2.ContainerExchangeResponse(shutdown=True)
                cancelled += container.cancelled
                container.cancelled = []
        if taken and fn.spec.batch_max_size and len(taken) < request.max_inputs:
            taken += await self._fill_batch(fn, container, request.max_inputs - len(taken))
        if taken:
            container.idle_since = 0.0
        if request.max_inputs > 0 and fn.queue:
            engine.autoscale(fn)
        return worker_pb2.ContainerExchangeResponse(
            inputs=[engine.to_container_input(rec, fn) for rec in taken],
            shutdown=container.shutdown, cancelled_input_ids=cancelled,
        )

    async def _fill_batch(self, fn, container, room: int) -> list:
        """@batched: wait up to batch_wait_ms for more inputs to join the batch."""
        deadline = time.monotonic() + fn.spec.batch_wait_ms / 1000.0
        extra = []
        while len(extra) < room and not container.shutdown:
            extra += self.engine._take(fn, container, room - len(extra))
            remaining = deadline - time.monotonic()
            if len(extra) >= room or remaining <= 0:
                break
            await fn.input_notifier.wait(remaining)
        return extra

    async def _wait_for_inputs(self, container, max_inputs: int, timeout: float):
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        container.waiter, container.waiter_max = fut, max_inputs
        timer = loop.call_later(timeout, lambda: fut.done() or fut.set_result([]))
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.result():
                self.engine.release_unsent(container, fut.result())
            raise
        finally:
            timer.cancel()
            if container.waiter is fut:
                container.waiter = None
