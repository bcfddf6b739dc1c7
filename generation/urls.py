from django.urls import path

from . import views

urlpatterns = [
    path("", views.cohort_list, name="cohort-list"),
    path("new/", views.cohort_create, name="cohort-create"),
    path("<int:pk>/", views.cohort_detail, name="cohort-detail"),
    path("<int:pk>/progress.json", views.cohort_progress, name="cohort-progress"),
    path("<int:pk>/cancel/", views.cohort_cancel, name="cohort-cancel"),
    path("<int:pk>/images/<int:image_pk>.png", views.image_file, name="cohort-image"),
    path("<int:pk>/images/<int:image_pk>.json", views.image_details, name="cohort-image-details"),
    path("<int:pk>/images/<int:image_pk>.dcm", views.image_dicom, name="cohort-image-dicom"),
    path("<int:pk>/gallery.json", views.cohort_gallery, name="cohort-gallery"),
]
