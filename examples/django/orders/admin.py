from django.contrib import admin

from orders.models import Order, Report


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("pk", "email", "item", "quantity", "created_at", "confirmed_at", "stock_reserved")


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    list_display = ("day", "orders", "items", "built_at")
