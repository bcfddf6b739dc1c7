"""Register (or update, by name) a PACS destination that researchers may push exports to.

    manage.py add_pacs_destination "Research PACS" --dimse --host pacs.internal --port 104 --called-ae RESEARCH
    manage.py add_pacs_destination "Cloud archive" --stow --url https://pacs.example.org/dicom-web \\
        --username cxr --password-env PACS_PASSWORD --allow-user alice --allow-user bob

The password is read from an environment variable or standard input, never from the command line
(where `ps` and shell history would show it), and stored encrypted.
"""

import os
import sys

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from exports import delivery as deliveries
from exports.models import Destination


class Command(BaseCommand):
    help = "Register or update a PACS destination (DICOM C-STORE or DICOMweb STOW-RS)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        kind = parser.add_mutually_exclusive_group(required=True)
        kind.add_argument("--dimse", action="store_const", dest="kind", const=Destination.Kind.DIMSE,
                          help="DICOM C-STORE")
        kind.add_argument("--stow", action="store_const", dest="kind", const=Destination.Kind.STOW,
                          help="DICOMweb STOW-RS")
        parser.add_argument("--description", default="")
        parser.add_argument("--host", default="")
        parser.add_argument("--port", type=int)
        parser.add_argument("--called-ae", default="", help="the PACS's AE title")
        parser.add_argument("--calling-ae", default="CXRPLATFORM", help="our AE title (default CXRPLATFORM)")
        parser.add_argument("--url", default="", help="DICOMweb base URL (…/studies is appended)")
        parser.add_argument("--username", default="")
        secret = parser.add_mutually_exclusive_group()
        secret.add_argument("--password-env", metavar="VARIABLE", help="read the password from this variable")
        secret.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
        parser.add_argument("--allow-user", action="append", default=[], metavar="USERNAME",
                            help="a user who may send to it (repeatable)")
        parser.add_argument("--open-to-all", action="store_true", help="anyone with the Export tier may use it")
        parser.add_argument("--inactive", action="store_true")

    def handle(self, *args, **options):
        password = None
        if options["password_env"]:
            password = os.environ.get(options["password_env"])
            if not password:
                raise CommandError(f"The environment variable {options['password_env']} is empty or unset.")
        elif options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\n")
        users = []
        for username in options["allow_user"]:
            user = get_user_model().objects.filter(username=username).first()
            if user is None:
                raise CommandError(f"No user named {username}.")
            users.append(user)
        destination = Destination.objects.filter(name=options["name"]).first() or Destination(name=options["name"])
        destination.kind = options["kind"]
        destination.description = options["description"]
        destination.host, destination.port = options["host"], options["port"]
        destination.called_ae_title, destination.calling_ae_title = options["called_ae"], options["calling_ae"]
        destination.base_url, destination.username = options["url"], options["username"]
        destination.open_to_all_exporters = options["open_to_all"]
        destination.is_active = not options["inactive"]
        try:
            deliveries.save_destination(destination, password=password, changed=["command line"])
        except ValidationError as error:
            raise CommandError("; ".join(f"{field}: {' '.join(messages)}"
                                         for field, messages in error.message_dict.items())) from None
        if users:
            destination.allowed_users.add(*users)
        self.stdout.write(f"Destination {destination.pk}: {destination.name} ({destination.get_kind_display()}, "
                          f"{destination.address}){', password stored encrypted' if destination.has_password else ''}.")
