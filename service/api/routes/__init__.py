"""One module per feature; ``api_router`` mounts them all."""
from fastapi import APIRouter

from apudae.service.api.routes import classify, evaluate, health, models, purify, score

api_router = APIRouter()
for module in (health, models, purify, classify, score, evaluate):
    api_router.include_router(module.router)
