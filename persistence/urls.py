"""Dashboard URLs."""

from django.urls import path

from persistence import views

app_name = "persistence"

urlpatterns = [
    path("", views.states, name="states"),
]
