from django.db import models

# The most of one item a single order may take; more is out of stock and the order is rolled back.
STOCK_LIMIT = 10


class OutOfStock(Exception):
    pass


class Order(models.Model):
    email = models.EmailField()
    item = models.CharField(max_length=100)
    quantity = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    confirmation_task = models.CharField(max_length=64, blank=True, help_text="result id of the confirmation mail")
    confirmed_at = models.DateTimeField(null=True, blank=True)
    stock_reserved = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"order {self.pk}: {self.quantity} x {self.item}"


class Report(models.Model):
    day = models.DateField()
    orders = models.PositiveIntegerField()
    items = models.PositiveIntegerField()
    attempt = models.PositiveIntegerField(default=1)
    built_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"report for {self.day}"
