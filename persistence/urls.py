"""Dashboard URLs."""

from django.urls import path

from persistence import views, worker_views

app_name = "persistence"

urlpatterns = [
    path("", views.states, name="states"),
    path("workers/", worker_views.workers, name="workers"),
]
