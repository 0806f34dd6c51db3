"""The produce shop: catalogue, checkout, payments, orders, traceability, settlement."""
