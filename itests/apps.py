from django.apps import AppConfig


class ItestsConfig(AppConfig):
    default_auto_field = 'django.db.models.BigAutoField'
    name = 'itests'
