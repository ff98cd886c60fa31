"""Dashboard URLs (mounted at /): sessions, a session's results, starting a session, login."""
from django.contrib.auth import views as auth_views
from django.urls import path

from sessions import views

app_name = "dashboard"

urlpatterns = [
    path("", views.session_list, name="session-list"),
    path("sessions/<uuid:guid>/", views.session_detail, name="session-detail"),
    path("sessions/<uuid:guid>/sims/", views.session_sims, name="session-sims"),
    path("sessions/<uuid:guid>/sims/<str:iccid>/", views.session_sim, name="session-sim"),
    path("sessions/<uuid:guid>/sims/<str:iccid>/pin/", views.session_sim_pin, name="session-sim-pin"),
    path("sessions/<uuid:guid>/sims/<str:iccid>/unpin/", views.session_sim_unpin, name="session-sim-unpin"),
    path("sessions/<uuid:guid>/usage/", views.session_usage, name="session-usage"),
    path("sessions/<uuid:guid>/sims.csv", views.session_sims_csv, name="session-sims-csv"),
    path("providers/<int:provider_id>/", views.provider_detail, name="provider-detail"),
    path("providers/<int:provider_id>/start/", views.session_start, name="session-start"),
    path("accounts/login/", auth_views.LoginView.as_view(next_page="dashboard:session-list"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="dashboard:login"), name="logout"),
]
