"""Dashboard URLs of the push (mounted at /): apply a session's recommendations, follow a push."""
from django.urls import path

from pushes import views

app_name = "pushes"

urlpatterns = [
    path("sessions/<uuid:guid>/apply/", views.session_apply_page, name="session-apply"),
    path("sessions/<uuid:guid>/budget/", views.session_budget_page, name="session-budget"),
    path("pushes/<int:pk>/", views.push_detail, name="push-detail"),
]
