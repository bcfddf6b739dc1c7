from django.urls import path

from . import views

urlpatterns = [
    path("", views.quarantine, name="screening-quarantine"),
    path("records/<int:pk>/", views.record_detail, name="screening-record"),
    path("records/<int:pk>/confirm", views.confirm, name="screening-confirm"),
    path("records/<int:pk>/release", views.release, name="screening-release"),
    path("records/<int:pk>/synthetic.png", views.synthetic_image, name="screening-synthetic-image"),
    path("records/<int:pk>/training-match.png", views.training_match, name="screening-training-match"),
    path("indexes/", views.index_list, name="screening-indexes"),
]
