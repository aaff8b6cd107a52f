"""A web app of your own that uses the mesh: ``POST /plan`` asks the trip planner.

Run the trip planner, then this app::

    natsmesh start agents/ -d
    pip install 'natsmesh[fastapi]'
    uvicorn examples.fastapi_app:app --port 8000
    curl -s localhost:8000/plan -H 'content-type: application/json' \\
         -d '{"destination": "Kyoto", "dates": "June 1-5, 2026", "budget": "$2000"}'

The handler's mesh calls continue the request's ``traceparent``: send one, and
``natsmesh trace <its trace id>`` shows the planner's whole call tree.
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel

import natsmesh as mesh

app = FastAPI(title="Trip planner", lifespan=mesh.fastapi.lifespan(caller="trip-web"))
mesh.fastapi.add_error_handler(app)  # a mesh error becomes its HTTP status (404, 422, 504...)


class Trip(BaseModel):
    destination: str
    dates: str
    budget: str


class Plan(BaseModel):
    destination: str
    plan: str


@app.post("/plan")
async def plan(trip: Trip, plan_trip: mesh.MeshTool = mesh.fastapi.tool("plan_trip")) -> Plan:
    """Plan a trip with the mesh's planner agent."""
    text = await plan_trip(**trip.model_dump())
    return Plan(destination=trip.destination, plan=text)
