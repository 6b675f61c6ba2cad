"""The tools of the agent example: a small company directory, as plain Python functions.

promptlift reads each function's signature and docstring to tell the model what the tool does and
what it takes (``Tool.from_function``); the agent loop calls them when the model asks.
"""

from __future__ import annotations

EMPLOYEES = {
    "Mara Lindqvist": ("E101", "Payments"),
    "Tomasz Wrona": ("E102", "Search"),
    "Aiyana Redcloud": ("E103", "Billing"),
    "Kenji Okabe": ("E104", "Mobile"),
    "Ines Carvalho": ("E105", "Payments"),
    "Dmitri Volkov": ("E106", "Security"),
    "Leila Haddad": ("E107", "Search"),
    "Oskar Nyberg": ("E108", "Data"),
    "Priya Raman": ("E109", "Mobile"),
    "Farouk Adeyemi": ("E110", "Billing"),
    "Greta Hallberg": ("E111", "Design"),
    "Mateo Ruiz": ("E112", "Security"),
    "Yuki Tanabe": ("E113", "Data"),
    "Nadia Petrescu": ("E114", "Design"),
    "Callum Fraser": ("E115", "Support"),
    "Amara Nwosu": ("E116", "Support"),
    "Henrik Dahl": ("E117", "Payments"),
    "Sofia Marchetti": ("E118", "Search"),
    "Rohan Mehta": ("E119", "Billing"),
    "Elif Demir": ("E120", "Mobile"),
}

TEAM_OFFICES = {
    "Payments": "Lisbon",
    "Search": "Toronto",
    "Billing": "Dublin",
    "Mobile": "Osaka",
    "Security": "Tallinn",
    "Data": "Montreal",
    "Design": "Lisbon",
    "Support": "Nairobi",
}


def find_employee(name: str) -> dict[str, str]:
    """Look up an employee of the company by full name.

    Args:
        name: the employee's full name, as written in the question
    """
    for known, (employee_id, team) in EMPLOYEES.items():
        if known.lower() == " ".join(name.split()).lower():
            return {"name": known, "id": employee_id, "team": team}
    raise LookupError(f"no employee named {name!r}")


def team_office(team: str) -> str:
    """The city of a team's office.

    Args:
        team: the team's name, like Payments
    """
    city = TEAM_OFFICES.get(team.strip().title())
    if city is None:
        raise LookupError(f"no team named {team!r}; the teams are {', '.join(TEAM_OFFICES)}")
    return city
