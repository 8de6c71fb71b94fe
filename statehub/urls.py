"""URL configuration: the dashboard at /, Django's admin at /admin/, auth at /accounts/.

Of Django's auth views only those the dashboard uses are routed: log in and out, change one's
password, and the one-time set-password link an admin hands out (no password-reset e-mails).
"""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from persistence.tokens import set_password_tokens

accounts = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path(
        "reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(token_generator=set_password_tokens),
        name="password_reset_confirm",
    ),
    path(
        "reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include(accounts)),
    path("", include("persistence.urls")),
]
