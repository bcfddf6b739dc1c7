from django.shortcuts import render


def home(request):
    return render(request, "home.html")


def bad_request(request, exception=None):
    return render(request, "errors/error.html", {"title": "Bad request", "message": "The request could not be understood."}, status=400)


def permission_denied(request, exception=None):
    return render(request, "errors/error.html", {"title": "Not allowed", "message": "You do not have access to this page."}, status=403)


def page_not_found(request, exception=None):
    return render(request, "errors/error.html", {"title": "Not found", "message": "There is nothing here, or it is not yours to see."}, status=404)


def server_error(request):
    return render(request, "errors/error.html", {"title": "Something went wrong", "message": "The error has been logged. Please try again later."}, status=500)
