"""The shipped dialplan, hunted as mod_dialplan_xml does, its `lua` actions run in the Lua
harness (a test can "dial" `*11` and have the actions run)."""
from __future__ import annotations

import glob
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lua_harness import CONF_DIR, FreeSwitch, lua_argv, run_script
from lua_session import HarnessError, Session


@dataclass
class Extension:
    name: str
    continue_: bool
    conditions: list[ElementTree.Element]


@dataclass
class Dialplan:
    """The shipped `default` context, hunted like mod_dialplan_xml does."""

    apis: dict[str, Callable[[str], str]] = field(default_factory=dict)
    extensions: list[Extension] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.extensions:
            self.extensions = load_context(CONF_DIR / "dialplan" / "default.xml", "default")

    def expand(self, text: str, session: Session) -> str:
        """${var} and ${api(args)} expansion, innermost first."""
        for _ in range(20):
            new = re.sub(r"\$\{([A-Za-z0-9_]+)\}",
                         lambda m: session.variables.get(m.group(1), ""), text)
            new = re.sub(r"\$\{([a-z_]+)\(([^(){}]*)\)\}", lambda m: self._api(m, session), new)
            if new == text:
                return new
            text = new
        raise HarnessError(f"cannot expand {text!r}")

    def _api(self, match: re.Match[str], session: Session) -> str:
        name, args = match.group(1), match.group(2)
        if name not in self.apis:
            raise HarnessError(f"dialplan calls the API {name}() that the test did not provide")
        return self.apis[name](args)

    def hunt(self, session: Session) -> list[tuple[str, str]]:
        """The actions the call would execute, in order (inline ones already done).

        Mirrors mod_dialplan_xml's parse_exten: conditions are tried in order, the actions of
        each condition that matches are added (inline ones run at once), the first one that
        does not match ends the extension and makes it "not proceed"; an extension that
        proceeds ends the hunt unless it has continue="true".
        """
        actions: list[tuple[str, str]] = []
        for extension in self.extensions:
            proceed = False
            for condition in extension.conditions:
                field_name = condition.get("field")
                expression = condition.get("expression")
                if field_name is None or expression is None or condition.find("anti-action") \
                        is not None or condition.get("break") is not None:
                    raise HarnessError(f"{extension.name}: only field/expression conditions "
                                       "without anti-actions or break are modelled")
                value = (self.expand(field_name, session) if "$" in field_name
                         else session.variables.get(field_name, ""))
                m = re.search(expression, value)
                if not m:
                    proceed = False
                    break
                proceed = True
                captures = tuple(g or "" for g in m.groups())
                for action in condition.findall("action"):
                    app = action.get("application", "")
                    data = re.sub(r"\$(\d)", lambda m, c=captures: _capture(c, int(m.group(1))),
                                  action.get("data", ""))
                    if action.get("inline") == "true":
                        self.run_action(app, data, session, None)
                    else:
                        actions.append((app, data))
            if proceed and not extension.continue_:
                break
        return actions

    def run_action(self, app: str, data: str, session: Session, fs: FreeSwitch | None,
                   lua_version: str = "lua54") -> None:
        data = self.expand(data, session)
        if app == "answer":
            session.call("answer")
        elif app == "hangup":
            session.call("hangup", data or None)
        elif app in ("set", "export"):
            session.call("execute", app, data)
        elif app == "lua":
            if fs is None:
                raise HarnessError("lua cannot run inline")
            script, args = lua_argv(data)
            run_script(script, args, session, fs, lua_version)
        elif app == "bridge":
            session.bridges.append({"target": data, "b_leg": dict(session.exported)})
        else:
            raise HarnessError(f"dialplan application {app!r} is not part of this stand-in")

    def dial(self, destination: str, session: Session, fs: FreeSwitch,
             lua_version: str = "lua54") -> list[tuple[str, str]]:
        """Route a call to `destination` and run the actions; returns them."""
        session.variables["destination_number"] = destination
        actions = self.hunt(session)
        for app, data in actions:
            if session.hangup_cause is not None:
                break
            self.run_action(app, data, session, fs, lua_version)
        return actions


def _capture(captures: tuple[str, ...], n: int) -> str:
    return captures[n - 1] if 0 < n <= len(captures) else ""


def parse_extensions(xml: str) -> list[Extension]:
    """Extensions from an XML snippet (a site's own route, in tests)."""
    root = ElementTree.fromstring(f"<include>{xml}</include>")
    return [Extension(e.get("name", ""), e.get("continue") == "true", e.findall("condition"))
            for e in root.iter("extension")]


def load_context(path: Path, name: str) -> list[Extension]:
    """The extensions of context `name`, after resolving X-PRE-PROCESS includes."""
    root = ElementTree.fromstring(preprocess(path))
    for context in root.iter("context"):
        if context.get("name") == name:
            return [Extension(e.get("name", ""), e.get("continue") == "true",
                              e.findall("condition")) for e in context.iter("extension")]
    raise HarnessError(f"no context {name} in {path}")


def preprocess(path: Path, variables: dict[str, str] | None = None) -> str:
    """The file's text with X-PRE-PROCESS include resolved (relative to its directory, as the
    dialplan's own includes are written) and $${var} replaced from `variables`."""
    text = path.read_text()
    text = re.sub(r"<\?xml[^>]*\?>", "", text)

    def include(m: re.Match[str]) -> str:
        # FreeSWITCH inserts the children of an included file's <include> root.
        parts = []
        for included in sorted(glob.glob(str(path.parent / m.group(1)))):
            root = ElementTree.fromstring(preprocess(Path(included), variables))
            children = list(root) if root.tag == "include" else [root]
            parts.extend(ElementTree.tostring(child, encoding="unicode") for child in children)
        return "\n".join(parts)

    text = re.sub(r'<X-PRE-PROCESS\s+cmd="include"\s+data="([^"]+)"\s*/>', include, text)
    if variables is not None:
        text = re.sub(r"\$\$\{([A-Za-z0-9_]+)\}", lambda m: variables[m.group(1)], text)
    return text
