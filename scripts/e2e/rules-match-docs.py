"""Checks that deploy/rules/*.yml hold the alerts of docs/monitoring.md: same names,
expressions and `for` durations (deploy/ may add labels and annotations).

Usage: python3 scripts/e2e/rules-match-docs.py docs/monitoring.md deploy/rules/ngit-sync.yml
Prints one line and exits 1 on any difference.
"""
import re
import sys

import yaml


def alerts(doc):
    out = {}
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            if "alert" in rule:
                out[rule["alert"]] = (" ".join(str(rule["expr"]).split()), str(rule.get("for", "")))
    return out


def main(markdown_path, rules_path):
    text = open(markdown_path, encoding="utf-8").read()
    section = text.split("## Alerts", 1)[-1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    if not block:
        print(f"rules-match-docs: no yaml block under '## Alerts' in {markdown_path}")
        return 1
    documented = alerts(yaml.safe_load(block.group(1)))
    deployed = alerts(yaml.safe_load(open(rules_path, encoding="utf-8")))
    problems = []
    for name in sorted(set(documented) | set(deployed)):
        if name not in deployed:
            problems.append(f"{name} documented but not deployed")
        elif name not in documented:
            problems.append(f"{name} deployed but not documented")
        elif documented[name] != deployed[name]:
            problems.append(f"{name} differs: docs {documented[name]} deploy {deployed[name]}")
    if problems:
        print("rules-match-docs: " + "; ".join(problems))
        return 1
    print(f"rules-match-docs: {len(deployed)} alerts match docs/monitoring.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
