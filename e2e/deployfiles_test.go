package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// unitSettings returns the Key=Value lines of a systemd unit (every value
// of a key, in order).
func unitSettings(unit string) map[string][]string {
	kv := map[string][]string{}
	for _, l := range strings.Split(unit, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";") || strings.HasPrefix(l, "[") {
			continue
		}
		if k, v, ok := strings.Cut(l, "="); ok {
			kv[k] = append(kv[k], v)
		}
	}
	return kv
}

// TestSystemdUnit: deploy/callgate.service passes systemd-analyze verify,
// and the service can read its config as deploy/README.md installs it
// (root's, mode 0640): a DynamicUser service cannot open such a file
// itself, so it must come through LoadCredential (systemd reads it as
// root) and ExecStart must use that copy.
func TestSystemdUnit(t *testing.T) {
	root := filepath.Join(repoRoot(t), "deploy")
	unitBytes, err := os.ReadFile(filepath.Join(root, "callgate.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(unitBytes)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	// install -D -m 0640 callgate.yaml /etc/callgate/callgate.yaml
	m := regexp.MustCompile(`install -D -m (0[0-7]{3}) \S+\.yaml (\S+\.yaml)`).FindStringSubmatch(string(readme))
	if m == nil {
		t.Fatal("deploy/README.md does not say how to install the config (install -D -m MODE callgate.yaml PATH)")
	}
	mode, _ := strconv.ParseUint(m[1], 8, 32)
	installed := m[2]
	kv := unitSettings(unit)
	exec0 := strings.Join(kv["ExecStart"], " ")
	cm := regexp.MustCompile(`--config[= ](\S+)`).FindStringSubmatch(exec0)
	if cm == nil {
		t.Fatalf("ExecStart %q has no --config", exec0)
	}
	cfgArg := cm[1]
	runsAsRoot := strings.Join(kv["DynamicUser"], "") != "yes" && (len(kv["User"]) == 0 || kv["User"][0] == "root")
	switch {
	case runsAsRoot, mode&0o004 != 0:
		// root, or a file anyone may read: nothing more to check.
	case strings.HasPrefix(cfgArg, "%d/") || strings.HasPrefix(cfgArg, "${CREDENTIALS_DIRECTORY}/"):
		name := cfgArg[strings.Index(cfgArg, "/")+1:]
		found := false
		for _, lc := range kv["LoadCredential"] {
			if lc == name+":"+installed {
				found = true
			}
		}
		if !found {
			t.Errorf("ExecStart reads credential %s, but no LoadCredential=%s:%s (the file deploy/README.md installs)", name, name, installed)
		}
	default:
		t.Errorf("the service runs as an unprivileged user (DynamicUser=%v User=%v) and reads --config %s, but deploy/README.md installs %s root-owned with mode %s: it cannot open it (use LoadCredential=)",
			kv["DynamicUser"], kv["User"], cfgArg, installed, m[1])
	}

	if _, err := os.Stat("/usr/bin/systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed (Debian package systemd; `make deps` installs it): unit not verified")
	}
	// ExecStart pointed at a binary that exists here.
	dir := t.TempDir()
	fixed := strings.ReplaceAll(unit, "/usr/local/bin/callgate", "/bin/true")
	if err := os.WriteFile(filepath.Join(dir, "callgate.service"), []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/systemd-analyze", "verify", filepath.Join(dir, "callgate.service")).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify callgate.service: %v\n%s", err, out)
	}
}

// TestComposeExposure: what the compose file publishes without
// authentication (Prometheus, Grafana with admin/admin) is bound to
// 127.0.0.1, and Prometheus cannot be shut down over HTTP.
func TestComposeExposure(t *testing.T) {
	var compose struct {
		Services map[string]struct {
			Command []string `yaml:"command"`
			Ports   []string `yaml:"ports"`
		} `yaml:"services"`
	}
	readYAML(t, filepath.Join(repoRoot(t), "deploy/docker-compose.yml"), &compose)
	for _, name := range []string{"prometheus", "grafana"} {
		svc, ok := compose.Services[name]
		if !ok {
			t.Errorf("no service %s", name)
			continue
		}
		if len(svc.Ports) == 0 {
			t.Errorf("%s publishes no port", name)
		}
		for _, p := range svc.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %q on every interface, want 127.0.0.1:HOST:CONTAINER", name, p)
			}
		}
		for _, a := range svc.Command {
			if strings.Contains(a, "enable-lifecycle") || strings.Contains(a, "enable-admin-api") {
				t.Errorf("%s runs with %s (shutdown/reload/admin over unauthenticated HTTP)", name, a)
			}
		}
	}
}

// dockerignored reports whether path (relative to the build context) is
// left out by the .dockerignore patterns (Docker's rules: patterns are
// anchored at the context root, "**" matches any number of directories,
// a directory's exclusion covers what is in it, "!" re-includes).
func dockerignored(patterns []string, path string) bool {
	ignored := false
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		p = strings.Trim(filepath.Clean(p), "/")
		re := "^" + strings.NewReplacer(`\*\*/`, "(.*/)?", `\*\*`, ".*", `\*`, "[^/]*", `\?`, "[^/]").Replace(regexp.QuoteMeta(p)) + "(/.*)?$"
		if regexp.MustCompile(re).MatchString(path) {
			ignored = !neg
		}
	}
	return ignored
}

// TestDockerignore: the image's build context (the repository root) does
// not carry a local gateway's keys and state (data/), the compose .env
// with the credentials key, the git history or built binaries, and still
// carries what the Dockerfile builds from.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), ".dockerignore"))
	if err != nil {
		t.Fatalf("no .dockerignore at the build context's root: %v", err)
	}
	var patterns []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	for _, p := range []string{"data/api-key", "data/admin-key", "data/secret.key", "data/jetstream/x",
		"deploy/.env", ".git/config", "bin/callgate", "gateway/sip/sip.test"} {
		if !dockerignored(patterns, p) {
			t.Errorf("%s is sent to the docker build", p)
		}
	}
	for _, p := range []string{"go.mod", "go.sum", "cmd/callgate/main.go", "node/node.go", "deploy/Dockerfile",
		"api/openapi.json", "provisioning/carrier/sandbox/sandbox.go"} {
		if dockerignored(patterns, p) {
			t.Errorf("%s is left out of the docker build, which needs it", p)
		}
	}
}

// TestDockerHealthcheck: the image declares a HEALTHCHECK in its final
// stage, and its command (run here with bash against a real gateway on
// the port the image exposes) passes on a ready gateway and fails when
// nothing answers.
func TestDockerHealthcheck(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy/Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	// Instructions of the final stage, continuation lines joined.
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	var final []string
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "FROM ") {
			final = nil
		}
		if l != "" && !strings.HasPrefix(l, "#") {
			final = append(final, l)
		}
	}
	var hc, expose string
	for _, l := range final {
		if strings.HasPrefix(l, "HEALTHCHECK ") {
			hc = l
		}
		if strings.HasPrefix(l, "EXPOSE ") {
			expose = l
		}
	}
	if hc == "" {
		t.Fatal("deploy/Dockerfile: no HEALTHCHECK in the image's stage")
	}
	_, cmdJSON, ok := strings.Cut(hc, " CMD ")
	if !ok {
		t.Fatalf("HEALTHCHECK without CMD: %s", hc)
	}
	var argv []string
	if err := json.Unmarshal([]byte(strings.TrimSpace(cmdJSON)), &argv); err != nil || len(argv) == 0 {
		t.Fatalf("HEALTHCHECK CMD is not an exec-form JSON array (%v): %s", err, cmdJSON)
	}
	const port = "8080"
	if !strings.Contains(strings.Join(argv, " "), "/"+port) || !strings.Contains(expose, port) {
		t.Fatalf("HEALTHCHECK %q does not probe the exposed HTTP port %s (%s)", argv, port, expose)
	}
	if !strings.Contains(strings.Join(argv, " "), "/readyz") && !strings.Contains(strings.Join(argv, " "), "/healthz") {
		t.Fatalf("HEALTHCHECK %q asks neither /readyz nor /healthz", argv)
	}
	run := func(httpAddr string) error {
		_, p, _ := strings.Cut(httpAddr, ":")
		args := make([]string, len(argv))
		for i, a := range argv {
			args[i] = strings.ReplaceAll(a, "/"+port, "/"+p)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	n, _ := startNode(t, testConfig(t))
	if err := run(n.HTTPAddr()); err != nil {
		t.Errorf("HEALTHCHECK fails on a ready gateway: %v", err)
	}
	if err := run(fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))); err == nil {
		t.Errorf("HEALTHCHECK passes with no gateway listening")
	}
}
