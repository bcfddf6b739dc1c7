from django.conf import settings


def platform(request):
    return {"ENVIRONMENT": settings.ENVIRONMENT}
