"""Function (the decorated function: remote, map, spawn...) and FunctionCall (a handle on a call)."""
from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from . import _client
from ._aio import blocking
from ._calls import LOG_WAIT_S, RPC_SLACK_S, FunctionCall, _cancel_quietly, _get_outputs, _wait_output, iter_generator
from ._map import InputFeeder, batches, iter_outputs, send_with_backoff
from ._spec import FunctionOptions
from .config import is_container
from .exception import InvalidError, NotFoundError

if TYPE_CHECKING:
    from ._app import App
    from ._client import Client

__all__ = ["Function", "FunctionCall"]

# How long FunctionInvoke waits for the output before we switch to long-polling.
INVOKE_WAIT_S = 25.0

_CALL_KIND_MAP, _CALL_KIND_SPAWN = 2, 3
_CO_GENERATOR, _CO_ASYNC_GENERATOR = 0x20, 0x200  # inspect.CO_*, without importing inspect

_ser: Any = None  # core_executor._serialization, imported on first use (it imports cloudpickle)


def _serialization() -> Any:
    global _ser
    if _ser is None:
        from . import _serialization as ser

        _ser = ser
    return _ser


def _rpc(fn: Callable, request: Any, client: "Client", timeout: float) -> Any:
    # The hot path: one gRPC call, errors mapped to SDK exceptions.
    try:
        return fn(request, metadata=client.metadata, timeout=timeout)
    except Exception as err:  # noqa: BLE001
        new = _client.translate_error(err, client.url)
        if new is err:
            raise
        raise new from None


class _ContainerState:
    """What the container runtime told us: this app's id and its functions' ids by name."""

    def __init__(self) -> None:
        self.app_id = ""
        self.function_ids: dict[str, str] = {}
        self.client: "Client | None" = None


_container = _ContainerState()
_by_id: "weakref.WeakValueDictionary[str, Function]" = weakref.WeakValueDictionary()


def _hydrate_for_container(
    app: "App | None", app_id: str, function_ids: dict[str, str], client: "Client | None" = None
) -> None:
    """Hook for the container runtime: bind this process's functions to their fabric ids.

    Call it after loading the user's code (KIND_FILE: pass the App the function belongs to,
    `function.app`; KIND_SERIALIZED: pass None) with ContainerHelloResponse.app_id and
    .app_function_ids, and optionally the runtime's Client (otherwise one is made from
    GPUFABRIC_URL / GPUFABRIC_TOKEN on the first call). Nothing connects here.
    """
    _container.app_id = app_id
    _container.function_ids = dict(function_ids)
    _container.client = client
    if app is not None:
        app._app_id = app_id
        for tag, fn in app._service_functions().items():
            function_id = function_ids.get(tag)
            if function_id:
                fn._bind(client, function_id, app_id, container_python_version="", printer=None)


def _hydrate_container(
    *, module: Any = None, app_id: str, function_id: str = "", app_function_ids: dict[str, str],
    client: "Client | None" = None,
) -> None:
    """The hook the container runtime calls (as `core_executor._hydrate_container`) after loading.

    Binds every App and Function found in the loaded module's globals to the ids of
    ContainerHelloResponse, so `.remote()` of the app's other functions works in the container;
    references pickled into a serialized function resolve by name from the same table.
    """
    from ._app import App

    _hydrate_for_container(None, app_id, app_function_ids, client)
    for value in list(vars(module).values()) if module is not None else ():
        if isinstance(value, App):
            _hydrate_for_container(value, app_id, app_function_ids, client)
            continue
        value = getattr(value, "_class_function", value)  # a Cls serves through its class function
        if isinstance(value, Function) and not value._function_id and value._tag in app_function_ids:
            value._bind(client, app_function_ids[value._tag], app_id, container_python_version="", printer=None)


def _function_from_ref(
    app_name: str, tag: str, function_id: str, app_id: str, python_version: str, lookup: bool = False
) -> "Function":
    """Unpickle a Function: the live one with that id in this process, or a lazy reference."""
    if function_id:
        live = _by_id.get(function_id)
        if live is not None:
            return live
    fn = Function._reference(app_name, tag, function_id, app_id, python_version)
    fn._lookup = lookup
    return fn


class Function:
    """A function registered on an App with `@app.function(...)`.

    Call it with `.remote(...)` (in a container, wait for the result), `.map(...)` (many inputs),
    `.spawn(...)` (start and return a FunctionCall) or `.local(...)` (here, in this process).
    """

    def __init__(self, raw_f: Callable | None, tag: str, app: "App | None", options: FunctionOptions | None):
        self._raw_f = raw_f
        self._tag = tag
        self._app = app
        self._app_name = app.name if app is not None else ""
        self._options = options or FunctionOptions()
        self._spec: Any = None
        self._client: "Client | None" = None
        self._function_id = ""
        self._app_id = ""
        self._python_version = ""
        self._version_ok = True
        self._printer: Any = None
        self._lookup = False  # from_name: always resolved by FunctionLookup
        self._looked_up_spec: Any = None
        self._method_name = ""  # set on a class method's handle: FunctionInput.method_name
        self._register = True  # the function's own object answers unpickling by id
        code = getattr(raw_f, "__code__", None)
        self._is_generator = bool(code is not None and code.co_flags & (_CO_GENERATOR | _CO_ASYNC_GENERATOR))
        self._lock = threading.Lock()
        if raw_f is not None:
            self.__doc__ = raw_f.__doc__
            self.__name__ = getattr(raw_f, "__name__", tag)
            self.__qualname__ = getattr(raw_f, "__qualname__", tag)
            self.__module__ = getattr(raw_f, "__module__", None)
            self.__wrapped__ = raw_f

    # ---- identity ----

    @classmethod
    def _reference(cls, app_name: str, tag: str, function_id: str = "", app_id: str = "", python_version: str = "") -> "Function":
        fn = cls(None, tag, None, None)
        fn._app_name = app_name
        fn._app_id = app_id
        fn._function_id = function_id
        fn._python_version = python_version
        return fn

    @classmethod
    def from_name(cls, app_name: str, name: str) -> "Function":
        """A deployed function, looked up by app and function name on first use (or `.hydrate()`)."""
        if not app_name or not name:
            raise InvalidError("Function.from_name needs the deployed app's name and the function's name")
        fn = cls._reference(app_name, name)
        fn._lookup = True
        return fn

    @classmethod
    def lookup(cls, app_name: str, name: str) -> "Function":
        """Deprecated Modal name of `Function.from_name` (it also resolves the id right away)."""
        import warnings

        warnings.warn("Function.lookup is deprecated; use Function.from_name(app_name, name)", DeprecationWarning, stacklevel=2)
        return cls.from_name(app_name, name).hydrate()

    @property
    def tag(self) -> str:
        """The function's name inside its app."""
        return self._tag

    @property
    def app(self) -> "App | None":
        """The App the function was registered on (None for a looked-up reference)."""
        return self._app

    @property
    def object_id(self) -> str:
        """The fabric's id for the function ("" until the app runs or the reference is looked up)."""
        return self._function_id

    @property
    def spec(self) -> Any:
        """The FunctionSpec proto the decorator arguments describe."""
        if self._spec is None:
            self._spec = self._options.spec(self._tag, self._raw_f)
        return self._spec

    @blocking
    def get_web_url(self) -> str:
        """The URL of this web endpoint (`@fabric.fastapi_endpoint`, `asgi_app`, ...) on the fabric's gateway."""
        from ._web import get_web_url

        return get_web_url(self)

    @blocking
    def get_web_token(self) -> str:
        """The token this endpoint's requests must carry when it has requires_proxy_auth=True ("" otherwise)."""
        from ._web import get_web_token

        return get_web_token(self)

    def get_raw_f(self) -> Callable:
        """The undecorated Python function."""
        if self._raw_f is None:
            raise InvalidError(f"{self._tag!r} is a reference to a remote function; it has no local code")
        return self._raw_f

    def __reduce__(self):
        # By reference: a Function crosses process boundaries as its names and ids.
        ref = (self._app_name, self._tag, self._function_id, self._app_id, self._python_version, self._lookup)
        return (_function_from_ref, ref)

    def __repr__(self) -> str:
        return f"Function({self._app_name}.{self._tag}{', ' + self._function_id if self._function_id else ''})"

    # ---- binding to a fabric ----

    def _bind(self, client: "Client | None", function_id: str, app_id: str, *, container_python_version: str, printer: Any) -> None:
        self._client = client
        self._function_id = function_id
        self._app_id = app_id
        self._python_version = container_python_version
        from ._serialization import python_version

        self._version_ok = not container_python_version or container_python_version == python_version()
        self._printer = printer
        if self._register:
            _by_id[function_id] = self

    def _unbind(self) -> None:
        _by_id.pop(self._function_id, None)
        self._client = None
        self._function_id = ""
        self._app_id = ""
        self._printer = None

    @blocking
    def hydrate(self) -> "Function":
        """Resolve the function's id now (a lookup for `from_name` references)."""
        self._ready()
        return self

    def _resolve(self) -> None:
        with self._lock:
            if self._client is not None and self._function_id:
                return
            if is_container() and not self._lookup:
                function_id = self._function_id
                if not function_id and self._app_id in ("", _container.app_id):
                    function_id = _container.function_ids.get(self._tag, "")
                if function_id:
                    client = _container.client or _client.get_client()
                    self._bind(client, function_id, self._app_id or _container.app_id,
                               container_python_version=self._python_version, printer=None)
                    return
            if self._function_id:
                live = _by_id.get(self._function_id)
                if live is not None and live._client is not None:
                    self._bind(live._client, live._function_id, live._app_id,
                               container_python_version=live._python_version, printer=live._printer)
                    return
                self._bind(_client.get_client(), self._function_id, self._app_id,
                           container_python_version=self._python_version, printer=None)
                return
            if self._app is not None and isinstance(self._raw_f, type):
                raise InvalidError(
                    f"class {self._tag!r} is not running: call it inside `with app.run():`, from a "
                    f"@app.local_entrypoint() run by `gpufabric run`, or deploy the app and use "
                    f"Cls.from_name({self._app_name or 'APP_NAME'!r}, {self._tag!r})"
                )
            if self._app is not None:
                raise InvalidError(
                    f"function {self._tag!r} is not running: call it inside `with app.run():`, from a "
                    f"@app.local_entrypoint() run by `gpufabric run`, or deploy the app and use "
                    f"Function.from_name({self._app_name or 'APP_NAME'!r}, {self._tag!r})"
                )
            client = _client.get_client()
            req = client.pb.FunctionLookupRequest(app_name=self._app_name, function_name=self._tag)
            try:
                resp = client.call("FunctionLookup", req, timeout=30.0)
            except NotFoundError as exc:
                raise NotFoundError(
                    f"no deployed function {self._tag!r} in app {self._app_name!r}; deploy it with `gpufabric deploy`"
                ) from exc
            self._looked_up_spec = resp.spec
            self._bind(client, resp.function_id, resp.app_id, container_python_version=resp.container_python_version, printer=None)

    def _ready(self) -> "Client":
        client = self._client
        if client is None or not self._function_id:
            self._resolve()
            client = self._client
        elif client.pid != os.getpid() or client.closed:
            client = self._client = _client.current(client)
        if not self._version_ok:
            _serialization().check_python_version(self._python_version, what=f"function {self._tag!r}")
        return client

    def _wait_logs(self, log_seq: int) -> None:
        printer = self._printer
        if printer is not None and log_seq > printer.printed_seq:
            printer.wait_for(log_seq, LOG_WAIT_S)

    # ---- calling ----

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function here, in this process."""
        return self.get_raw_f()(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.local(*args, **kwargs)

    @blocking
    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function once in a container and return its result (or raise its exception)."""
        if self._is_generator:
            raise InvalidError(f"{self._tag!r} is a generator function; iterate over .remote_gen(...) instead")
        client = self._ready()
        ser = _ser or _serialization()
        hello = client.hello()
        inp = ser.encode_input(args, kwargs, blobs=client, inline_limit=hello.inline_limit_bytes or ser.INLINE_LIMIT,
                               max_payload=hello.max_payload_bytes or ser.MAX_PAYLOAD)
        if self._method_name:
            inp.method_name = self._method_name
        req = client.pb.FunctionInvokeRequest(function_id=self._function_id, input=inp, timeout_s=INVOKE_WAIT_S)
        invoke = client.invoke
        resp = send_with_backoff(lambda: _rpc(invoke, req, client, INVOKE_WAIT_S + RPC_SLACK_S))
        if resp.HasField("output"):
            output = resp.output
        else:
            output = _wait_output(client, resp.call_id, None)
        if output.log_seq:
            self._wait_logs(output.log_seq)
        return ser.decode_result(output.result, blobs=client)

    @blocking(iterator=True)
    def remote_gen(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """Run a generator function in a container and yield its items as they are produced.

        A remote exception is raised after the items produced before it.
        """
        if self._raw_f is not None and not self._is_generator:
            raise InvalidError(f"{self._tag!r} is not a generator function; call it with .remote()")
        call = self._spawn(args, kwargs)
        return iter_generator(call._client, call.object_id, self._wait_logs)

    @blocking
    def spawn(self, *args: Any, **kwargs: Any) -> "FunctionCall":
        """Start the function on one input and return a FunctionCall without waiting."""
        return self._spawn(args, kwargs)

    def _spawn(self, args: tuple, kwargs: dict) -> "FunctionCall":
        client = self._ready()
        ser = _serialization()
        inp = ser.encode_input(args, kwargs, blobs=client, inline_limit=client.inline_limit, max_payload=client.max_payload)
        if self._method_name:
            inp.method_name = self._method_name
        req = client.pb.FunctionMapRequest(function_id=self._function_id, kind=_CALL_KIND_SPAWN, inputs=[inp], closed=True)
        resp = send_with_backoff(lambda: _rpc(client.stub.FunctionMap, req, client, RPC_SLACK_S))
        return FunctionCall(resp.call_id, client=client, kind=_CALL_KIND_SPAWN, printer=self._printer)

    @blocking(iterator=True)
    def map(self, *iterables: Iterable[Any], kwargs: dict[str, Any] | None = None, order_outputs: bool = True,
            return_exceptions: bool = False) -> Iterator[Any]:
        """Run the function on every element of `iterables` (zipped, like the builtin `map`).

        Yields results in input order (or as they finish with `order_outputs=False`). A failed
        input raises its exception, or is yielded as the exception with `return_exceptions=True`.
        """
        if not iterables:
            raise InvalidError("map needs at least one iterable, e.g. f.map([1, 2, 3])")
        extra = dict(kwargs or {})
        return self._map_calls(((args, extra) for args in zip(*iterables)), order_outputs, return_exceptions)

    @blocking(iterator=True)
    def starmap(self, input_iterator: Iterable[Iterable[Any]], *, kwargs: dict[str, Any] | None = None,
                order_outputs: bool = True, return_exceptions: bool = False) -> Iterator[Any]:
        """Like `map`, but each element is a tuple of positional arguments."""
        extra = dict(kwargs or {})
        return self._map_calls(((tuple(args), extra) for args in input_iterator), order_outputs, return_exceptions)

    @blocking
    def for_each(self, *iterables: Iterable[Any], kwargs: dict[str, Any] | None = None, ignore_exceptions: bool = False) -> None:
        """Run the function on every element and wait for all of them, discarding the results."""
        if not iterables:
            raise InvalidError("for_each needs at least one iterable, e.g. f.for_each([1, 2, 3])")
        extra = dict(kwargs or {})
        for _ in self._map_calls(((args, extra) for args in zip(*iterables)), False, ignore_exceptions):
            pass

    @blocking
    def spawn_map(self, *iterables: Iterable[Any], kwargs: dict[str, Any] | None = None) -> "FunctionCall":
        """Start the function on every element and return once all inputs are sent.

        The returned FunctionCall's `.get()` gives the results as a list, in input order.
        """
        if not iterables:
            raise InvalidError("spawn_map needs at least one iterable")
        extra = dict(kwargs or {})
        client, call_id, feeder, _ = self._start_map(((args, extra) for args in zip(*iterables)))
        if feeder is not None:
            feeder.run()
        return FunctionCall(call_id, client=client, kind=_CALL_KIND_MAP, printer=self._printer)

    def _start_map(self, calls: Iterable[tuple[tuple, dict]]) -> tuple["Client", str, InputFeeder | None, int]:
        if self._is_generator:
            raise InvalidError(f"{self._tag!r} is a generator function; map over inputs calling .remote_gen() instead")
        client = self._ready()
        ser = _serialization()
        inline_limit, max_payload = client.inline_limit, client.max_payload

        method_name = self._method_name

        def encode(batch: list) -> list:
            inputs = ser.encode_inputs_fast(batch, blobs=client, inline_limit=inline_limit, max_payload=max_payload)
            if method_name:
                for inp in inputs:
                    inp.method_name = method_name
            return inputs

        chunks = batches(calls, client.max_inputs_per_batch)
        first, is_last = next(chunks)
        inputs = encode(first)  # an unpicklable first batch fails before anything is sent
        pb = client.pb
        req = pb.FunctionMapRequest(function_id=self._function_id, kind=_CALL_KIND_MAP, inputs=inputs, closed=is_last)
        # --- map across a fabric restart: batches are retried while the fabric is UNAVAILABLE ---
        # A FunctionMap stored just before the connection dropped leaves an orphan call whose
        # outputs nobody reads; the caller still gets each output once, from the retried call.
        resp = send_with_backoff(lambda: client._retrying(
            lambda: client.stub.FunctionMap(req, metadata=client.metadata, timeout=RPC_SLACK_S), True))
        call_id = resp.call_id
        if is_last:
            return client, call_id, None, len(first)
        accepted = [len(first)]  # inputs the call holds; the feeder sends one batch at a time

        def put(batch_inputs: list, closed: bool) -> Any:
            put_req = pb.FunctionPutInputsRequest(call_id=call_id, inputs=batch_inputs, closed=closed)
            retried = [False]

            def attempt() -> Any:
                # A batch stored before the connection dropped must not be stored twice: on a retry,
                # ask how many inputs the call already holds.
                if retried[0]:
                    info = client.call("FunctionCallGetInfo", pb.FunctionCallGetInfoRequest(call_id=call_id), timeout=10.0)
                    if info.num_inputs >= accepted[0] + len(batch_inputs):
                        return None
                retried[0] = True
                return client.stub.FunctionPutInputs(put_req, metadata=client.metadata, timeout=RPC_SLACK_S)

            resp = client._retrying(attempt, True)
            accepted[0] += len(batch_inputs)
            return resp
        # --- end map across a fabric restart ---

        return client, call_id, InputFeeder(put, encode, chunks, sent=len(first)), len(first)

    def _map_calls(self, calls: Iterable[tuple[tuple, dict]], order_outputs: bool, return_exceptions: bool) -> Iterator[Any]:
        client, call_id, feeder, first_count = self._start_map(calls)
        if feeder is not None:
            feeder.start()
        ser = _serialization()
        done = False
        try:
            outputs = iter_outputs(
                lambda cursor, wait: _get_outputs(client, call_id, cursor, wait),
                feeder=feeder,
                total=None if feeder is not None else first_count,
                ordered=order_outputs,
                wait_logs=self._wait_logs if self._printer is not None else None,
            )
            success = 1  # RESULT_STATUS_SUCCESS
            for output in outputs:
                result = output.result
                if result.status != success and return_exceptions:
                    yield ser.result_exception(result)
                else:
                    yield ser.decode_result(result, blobs=client)
            done = True
        finally:
            if not done:
                if feeder is not None:
                    feeder.stop()
                _cancel_quietly(client, call_id)
