from django.urls import include, path

from . import views

urlpatterns = [
    path("accounts/register/", views.register, name="register"),
    path("accounts/verify-email/resend/", views.resend_verification, name="resend-verification"),
    path("accounts/verify-email/<str:token>/", views.verify_email, name="verify-email"),
    path("accounts/2fa/setup/", views.otp_setup, name="otp-setup"),
    path("accounts/2fa/verify/", views.otp_verify, name="otp-verify"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),  # lands by role; the rest is Django's
    path("accounts/", include("django.contrib.auth.urls")),
    path("access/", views.dashboard, name="access-dashboard"),
    path("access/profile/", views.profile_edit, name="access-profile"),
    path("access/physionet/", views.attest_physionet, name="access-physionet"),
    path("access/certificates/new/", views.certificate_upload, name="access-certificate-upload"),
    path("access/certificates/<int:pk>/file/", views.certificate_file, name="access-certificate-file"),
    path("access/agreements/<slug:slug>/", views.agreement_sign, name="access-agreement-sign"),
    path("access/requests/new/", views.request_new, name="access-request-new"),
    path("access/requests/<int:pk>/", views.request_detail, name="access-request-detail"),
    path("review/", views.review_queue, name="review-queue"),
    path("review/requests/<int:pk>/", views.review_request, name="review-request"),
    path("review/certificates/", views.review_certificates, name="review-certificates"),
    path("review/certificates/<int:pk>/", views.review_certificate, name="review-certificate"),
]
