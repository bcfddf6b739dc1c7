from django import template

from quality.selectors import quality_card

register = template.Library()


@register.inclusion_tag("quality/_card.html")
def quality_card_panel(cohort):
    """The cohort page's quality card (the same figures as the API and exports)."""
    return {"card": quality_card(cohort), "cohort": cohort}
