"""The Prometheus alerting rules shipped in prometheus/ (installed under
$(PREFIX)/share/hellod/prometheus/): Prometheus's own promtool checks them and runs their
unit tests, every alert is tested both firing and not, and every series a rule reads
exists: hellod's in the file a real hellod writes, as a real node_exporter serves it;
node_exporter's systemd series in that node_exporter's build, about the units shipped in
systemd/. A metric or a label renamed in hellod, or in a rule, fails here."""
import os
import re
import subprocess
import tempfile

from harness import HELLOD, ROOT, Hellod, TestCase, parse_metrics
from netns import Loopback
from test_metrics import prometheus_tools, scrape_node_exporter, start_node_exporter

RULES_DIR = os.path.join(ROOT, "prometheus")
RULES = os.path.join(RULES_DIR, "hellod.rules.yml")
RULE_TESTS = os.path.join(RULES_DIR, "hellod.rules.test.yml")

# A metric name, and its label matchers if any: `name{label="value", label=~"regex"}`.
SELECTOR = re.compile(r'\b(?P<name>(?:hellod|node)_[a-zA-Z0-9_]+)\b(?:\{(?P<matchers>[^}]*)\})?')
MATCHER = re.compile(r'(?P<label>[a-zA-Z_]\w*)\s*(?P<op>=~|!~|!=|=)\s*"(?P<value>(?:[^"\\]|\\.)*)"')


def rules(path=RULES):
    """{alert: expr} from the rules file (its own layout: `- alert:`, then `expr:`, one
    line or a folded block)."""
    with open(path) as f:
        lines = f.read().splitlines()
    found, alert = {}, None
    for i, line in enumerate(lines):
        if m := re.match(r"\s*- alert: (\S+)$", line):
            alert = m.group(1)
        elif m := re.match(r"(\s*)expr: (.*)$", line):
            if m.group(2) == ">-":
                block = []
                for more in lines[i + 1:]:
                    if len(more) - len(more.lstrip()) <= len(m.group(1)):
                        break
                    block.append(more.strip())
                found[alert] = " ".join(block)
            else:
                found[alert] = m.group(2)
    return found


def rule_tests(path=RULE_TESTS):
    """{alert: [expected alerts at each eval_time: 0 for `exp_alerts: []`, else 1]}."""
    with open(path) as f:
        lines = f.read().splitlines()
    found, alert = {}, None
    for line in lines:
        if m := re.match(r"\s*alertname: (\S+)$", line):
            alert = m.group(1)
        elif m := re.match(r"\s*exp_alerts:(.*)$", line):
            found.setdefault(alert, []).append(0 if m.group(1).strip() == "[]" else 1)
    return found


def selectors(expr):
    """[(name, [(label, op, value)])] of every series selector in a PromQL expression."""
    out = []
    for m in SELECTOR.finditer(expr):
        matchers = [(x.group("label"), x.group("op"), re.sub(r"\\(.)", r"\1", x.group("value")))
                    for x in MATCHER.finditer(m.group("matchers") or "")]
        out.append((m.group("name"), matchers))
    return out


def matches(labels, matchers):
    """Whether a series' labels (a dict) satisfy PromQL label matchers (regexes anchored)."""
    for label, op, value in matchers:
        have = labels.get(label, "")
        ok = {"=": have == value, "!=": have != value,
              "=~": re.fullmatch(value, have) is not None, "!~": re.fullmatch(value, have) is None}[op]
        if not ok:
            return False
    return True


class AlertRules(TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tools = prometheus_tools()

    def promtool(self, *args, cwd=RULES_DIR):
        return subprocess.run([os.path.join(self.tools, "promtool"), *args], capture_output=True, text=True,
                              timeout=60, cwd=cwd)

    def test_promtool_checks_the_rules(self):
        result = self.promtool("check", "rules", RULES)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("SUCCESS: %d rules found" % len(rules()), result.stdout)

    def test_promtool_runs_the_unit_tests(self):
        result = self.promtool("test", "rules", RULE_TESTS)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("SUCCESS", result.stdout)

    def test_every_alert_is_tested_firing_and_not_firing(self):
        tested = rule_tests()
        self.assertGreaterEqual(len(rules()), 9)
        for alert in rules():
            self.assertIn(0, tested.get(alert, []), "%s is never tested quiet" % alert)
            self.assertIn(1, tested.get(alert, []), "%s is never tested firing" % alert)
        self.assertEqual(set(tested) - set(rules()), set(), "tests of alerts that do not exist")

    def test_every_series_a_rule_reads_exists(self):
        served = self.served_by_a_real_hellod()
        help_text = subprocess.run([os.path.join(self.tools, "node_exporter"), "--help"], capture_output=True,
                                   text=True, timeout=30)
        with open(os.path.join(self.tools, "node_exporter"), "rb") as f:
            exporter = f.read()
        units = os.listdir(os.path.join(ROOT, "systemd"))
        for alert, expr in rules().items():
            found = selectors(expr)
            self.assertNotEqual(found, [], "%s reads no series: %s" % (alert, expr))
            for name, matchers in found:
                what = "%s: %s%s" % (alert, name, matchers)
                if name.startswith("node_systemd_"):
                    # No systemd to scrape here: the name's part after the collector's in
                    # node_exporter's build, the units it names among those shipped.
                    self.assertTrue(name[len("node_systemd_"):].encode() in exporter, "%s: not in node_exporter" % what)
                    for label, op, value in matchers:
                        if label == "name":
                            self.assertTrue([u for u in units if matches({"name": u}, [(label, op, value)])], what)
                        elif label == "state":
                            self.assertIn(value, ("active", "activating", "deactivating", "inactive", "failed"), what)
                    if name == "node_systemd_service_restart_total":
                        self.assertIn("--collector.systemd.enable-restarts-metrics", help_text.stdout + help_text.stderr)
                    continue
                series = [dict(labels) for (n, labels) in served if n == name]
                self.assertNotEqual(series, [], "%s: no such series in node_exporter's scrape" % what)
                self.assertTrue([s for s in series if matches(s, matchers)],
                                "%s: no series matches; served: %s" % (what, series))

    def test_make_install_ships_them_and_make_uninstall_removes_them(self):
        with tempfile.TemporaryDirectory() as root:
            make = ["make", "-s", "-C", ROOT, "DESTDIR=" + root, "PREFIX=/usr"]
            result = subprocess.run([*make, "install-rules"], capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 0, result.stderr)
            installed = os.path.join(root, "usr", "share", "hellod", "prometheus")
            self.assertEqual(sorted(os.listdir(installed)), ["hellod.rules.test.yml", "hellod.rules.yml"])
            for name in os.listdir(installed):
                self.assertEqual(os.stat(os.path.join(installed, name)).st_mode & 0o777, 0o644)
                with open(os.path.join(installed, name)) as a, open(os.path.join(RULES_DIR, name)) as b:
                    self.assertEqual(a.read(), b.read())
            # Where an operator finds them, the unit tests run as they are.
            result = self.promtool("test", "rules", "hellod.rules.test.yml", cwd=installed)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            result = subprocess.run([*make, "uninstall-rules"], capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertEqual(os.listdir(os.path.join(root, "usr", "share")), [])

    def served_by_a_real_hellod(self):
        """Every series node_exporter's textfile collector serves from a real hellod's
        file (hello, echo and chat, the unit's file name), scraped while hellod serves."""
        with Loopback() as net, tempfile.TemporaryDirectory() as directory:
            os.chmod(directory, 0o755)
            start_node_exporter(self, net, directory)
            with Hellod("--listen", "hello@127.0.0.1:0", "--listen", "echo@127.0.0.1:0",
                        "--listen", "chat@127.0.0.1:0", "--metrics-file", os.path.join(directory, "hellod.prom"),
                        command=[*net.prefix(), HELLOD]) as d:
                scraped = parse_metrics(scrape_node_exporter(net))
                d.stop()
        self.assertIn(("hellod_up", ()), scraped)
        self.assertEqual(scraped[("hellod_up", ())], 1)
        return scraped


if __name__ == "__main__":
    import unittest
    unittest.main()
