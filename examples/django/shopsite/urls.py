from django.contrib import admin
from django.urls import path
from orders import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("orders/", views.place_order, name="place-order"),
    path("orders/<int:pk>/", views.order_status, name="order-status"),
    path("reports/", views.request_report, name="request-report"),
    path("reports/<str:result_id>/", views.report_status, name="report-status"),
]
