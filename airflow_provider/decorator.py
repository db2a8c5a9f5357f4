"""`@task.gpu_fabric(gpu=..., ...)`: a TaskFlow task whose Python function runs on the fabric."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from airflow.sdk.bases.decorator import DecoratedOperator, task_decorator_factory

from .operator import GpuFunctionOperator

if TYPE_CHECKING:
    from airflow.sdk.bases.decorator import TaskDecorator

__all__ = ["gpu_fabric_task"]


class _GpuFabricDecoratedOperator(DecoratedOperator, GpuFunctionOperator):
    """The operator behind `@task.gpu_fabric`: the decorated function is the `python_callable`."""

    custom_operator_name = "@task.gpu_fabric"
    template_fields: Sequence[str] = (
        *DecoratedOperator.template_fields,
        *(f for f in GpuFunctionOperator.template_fields if f not in ("function_args", "function_kwargs")),
    )
    template_fields_renderers = DecoratedOperator.template_fields_renderers
    shallow_copy_attrs: Sequence[str] = ("python_callable",)

    def __init__(self, *, python_callable: Callable, op_args: Any = None, op_kwargs: Any = None, **kwargs: Any) -> None:
        super().__init__(python_callable=python_callable, op_args=op_args, op_kwargs=op_kwargs,
                         kwargs_to_upstream={"python_callable": python_callable}, **kwargs)

    def _hook_apply_defaults(self, *args: Any, **kwargs: Any) -> Any:
        # Airflow runs this hook for every __init__ in the chain; the GpuFunctionOperator level
        # (python_callable, no op_args/op_kwargs) must not get an op_kwargs it does not take.
        if "op_args" not in kwargs and "op_kwargs" not in kwargs:
            return args, kwargs
        return super()._hook_apply_defaults(*args, **kwargs)

    @property
    def is_async(self) -> bool:
        return False  # the function runs on the fabric; the task itself is synchronous

    def _call_arguments(self) -> tuple[tuple, dict[str, Any]]:
        return tuple(self.op_args or ()), dict(self.op_kwargs or {})


def gpu_fabric_task(python_callable: Callable | None = None, multiple_outputs: bool | None = None,
                    **kwargs: Any) -> TaskDecorator:
    """Run the decorated function on the fabric: ``@task.gpu_fabric(gpu="A100", timeout=600)``.

    Keyword arguments are GpuFunctionOperator's (``gpu``, ``cpu``, ``memory``, ``timeout``,
    ``function_retries``, ``image``, ``env``, ``function_options``, ``deferrable``,
    ``gpu_fabric_conn_id``, ...) and BaseOperator's. Arguments and the return value travel
    through XCom as for any TaskFlow task; Airflow context values are not passed to the function.
    """
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=multiple_outputs,
        decorated_operator_class=_GpuFabricDecoratedOperator,
        **kwargs,
    )
