"""One module per feature; ``api_router`` mounts them all."""
from fastapi import APIRouter

from apudae.service.api.routes import classify, evaluate, health, models, purify, score, v2

api_router = APIRouter()
for module in (health, models, purify, classify, score, evaluate, v2):
    api_router.include_router(module.router)
