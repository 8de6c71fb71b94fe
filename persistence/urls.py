"""Dashboard URLs."""

from django.urls import path

from persistence import views, worker_views

app_name = "persistence"

urlpatterns = [
    path("", views.states, name="states"),
    path("workers/", worker_views.workers, name="workers"),
    path("workers/runs/", worker_views.worker_runs, name="worker_runs"),
    path("workers/online/", worker_views.workers_online, name="workers_online"),
    path("workers/run/", worker_views.run_now, name="worker_run_now"),
]
