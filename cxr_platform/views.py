from django.conf import settings
from django.http import HttpResponseServerError
from django.shortcuts import render
from django.template import loader


def home(request):
    return render(request, "home.html")


def bad_request(request, exception=None):
    return render(request, "errors/error.html", {"title": "Bad request", "message": "The request could not be understood."}, status=400)


def permission_denied(request, exception=None):
    return render(request, "errors/error.html", {"title": "Not allowed", "message": "You do not have access to this page."}, status=403)


def page_not_found(request, exception=None):
    return render(request, "errors/error.html", {"title": "Not found", "message": "There is nothing here, or it is not yours to see."}, status=404)


def server_error(request):
    # Rendered without the request's context processors: when the database is the
    # thing that failed, looking up request.user would fail again inside the handler.
    html = loader.render_to_string(
        "errors/error.html",
        {
            "title": "Something went wrong",
            "message": "The error has been logged. Please try again later.",
            "ENVIRONMENT": settings.ENVIRONMENT,
        },
    )
    return HttpResponseServerError(html)
