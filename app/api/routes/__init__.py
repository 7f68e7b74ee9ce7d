"""One router per resource: predict, models, health, admin."""
