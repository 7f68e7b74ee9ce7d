"""The API router: includes one router per resource."""

from fastapi import APIRouter

from .routes import admin, health, models, predict, review

api_router = APIRouter()
api_router.include_router(predict.router)
api_router.include_router(review.router)
api_router.include_router(models.router)
api_router.include_router(admin.router)
api_router.include_router(health.router)
