"""A small JSON API: place an order, see its confirmation mail's task, request a sales report."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET, require_POST

from orders.models import STOCK_LIMIT, Order, OutOfStock
from orders.tasks import build_sales_report, reserve_stock, send_order_confirmation


def _describe(result) -> dict:
    data = {"id": result.id, "status": str(result.status), "finished": result.is_finished}
    if result.status == "SUCCESSFUL":
        data["return_value"] = result.return_value
    if result.errors:
        data["errors"] = [e.exception_class_path for e in result.errors]
    return data


@require_POST
def place_order(request: HttpRequest) -> JsonResponse:
    try:
        with transaction.atomic():
            order = Order.objects.create(
                email=request.POST["email"], item=request.POST["item"], quantity=int(request.POST["quantity"])
            )
            # Both are sent only if this transaction commits.
            confirmation = send_order_confirmation.enqueue(order.pk)
            reserve_stock.delay_on_commit(order.pk)
            order.confirmation_task = confirmation.id
            order.save(update_fields=["confirmation_task"])
            if order.quantity > STOCK_LIMIT:
                raise OutOfStock(f"only {STOCK_LIMIT} of {order.item} can be ordered at once")
    except OutOfStock as exc:
        return JsonResponse({"error": str(exc)}, status=409)
    return JsonResponse({"order": order.pk, "confirmation": confirmation.id}, status=201)


@require_GET
def order_status(request: HttpRequest, pk: int) -> JsonResponse:
    order = get_object_or_404(Order, pk=pk)
    result = send_order_confirmation.get_result(order.confirmation_task)
    return JsonResponse({"order": order.pk, "stock_reserved": order.stock_reserved, "confirmation": _describe(result)})


@require_POST
async def request_report(request: HttpRequest) -> JsonResponse:
    result = await build_sales_report.aenqueue(request.POST["day"])
    return JsonResponse({"report": result.id}, status=202)


@require_GET
async def report_status(request: HttpRequest, result_id: str) -> JsonResponse:
    result = await build_sales_report.aget_result(result_id)
    return JsonResponse(_describe(result))
