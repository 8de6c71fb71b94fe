"""The three dashboard roles as Django groups (see persistence.roles)."""

from typing import Any

from django.db import migrations

ROLES = ("viewer", "operator", "admin")


def create_groups(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("auth", "Group")
    for name in ROLES:
        Group.objects.get_or_create(name=name)


def remove_groups(apps: Any, schema_editor: Any) -> None:
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("persistence", "0002_audit_entry"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
