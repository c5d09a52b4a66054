package server

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"
	"golang.org/x/crypto/bcrypt"
)

// errNoProtection is why a web config file that sets neither TLS nor basic
// auth users is refused: the exporter toolkit would serve every endpoint to
// anyone with it, silently, which is never what naming a file asked for.
var errNoProtection = errors.New("grants no protection: it sets neither tls_server_config nor basic_auth_users")

// readWebConfig parses the web config file at path as the exporter toolkit
// reads it, returning its content too.
func readWebConfig(path string) (*web.Config, []byte, error) {
	content, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var wc web.Config
	if err := yaml.Unmarshal(content, &wc); err != nil {
		return nil, content, err
	}
	return &wc, content, nil
}

// protects reports whether the toolkit, serving wc, guards the endpoints:
// with TLS (encrypted, and possibly client certificates) or basic auth.
func protects(wc *web.Config) bool {
	return wc.TLSConfig.IsEnabled() || len(wc.Users) > 0
}

// webGuard sits inside the exporter toolkit's handler, which reads the web
// config file again on every request and serves without authentication
// whatever file lists no users, an emptied one included. It reads the file
// too, and when that grants no protection, it keeps the last file that did
// in force: it checks basic auth against that file's users itself. The
// refusal is logged and counted once per file content. A file the toolkit
// cannot parse never reaches here: the toolkit answers 500.
type webGuard struct {
	path   string
	next   http.Handler
	logger *slog.Logger
	// refused counts the file contents refused.
	refused func()

	mu      sync.Mutex
	good    *web.Config
	refusal []byte // content of the file last refused, nil while it is good
	// bcryptMu runs one password check at a time, as the toolkit does: a
	// flood of wrong passwords costs one core, not all of them.
	bcryptMu sync.Mutex
}

func newWebGuard(path string, good *web.Config, next http.Handler, logger *slog.Logger, refused func()) *webGuard {
	return &webGuard{path: path, next: next, logger: logger, refused: refused, good: good}
}

func (g *webGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	good := g.current()
	if good == nil {
		g.next.ServeHTTP(w, r)
		return
	}
	// The file on disk grants nothing; the last good one still guards. With
	// only TLS, that guard is the connection itself: no new handshake
	// succeeds on the emptied file.
	if len(good.Users) > 0 && !g.authorized(good, r) {
		w.Header().Set("WWW-Authenticate", "Basic")
		writeError(w, http.StatusUnauthorized, "unauthorized")
		return
	}
	g.next.ServeHTTP(w, r)
}

// current reads the file and returns nil when it protects (the toolkit has
// enforced it), else the last good config, which stays in force.
func (g *webGuard) current() *web.Config {
	wc, content, err := readWebConfig(g.path)
	g.mu.Lock()
	defer g.mu.Unlock()
	if err == nil && protects(wc) {
		if g.refusal != nil {
			g.logger.Info("web config file grants protection again; using it", "file", g.path)
		}
		g.good, g.refusal = wc, nil
		return nil
	}
	if err == nil {
		err = errNoProtection
	}
	if content == nil {
		content = []byte{} // unreadable: still a refusal to remember
	}
	if g.refusal == nil || !bytes.Equal(content, g.refusal) {
		g.refusal = content
		g.refused()
		g.logger.Error("refusing the web config file; the last good one stays in force", "file", g.path, logKeyErr, err)
	}
	return g.good
}

func (g *webGuard) authorized(good *web.Config, r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	hash, known := good.Users[user]
	if !known {
		return false
	}
	g.bcryptMu.Lock()
	defer g.bcryptMu.Unlock()
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pass)) == nil
}

// validateWebConfig checks the file as the toolkit would serve it, and
// that it protects something.
func validateWebConfig(path string) error {
	if err := web.Validate(path); err != nil {
		return fmt.Errorf("web config file %s: %w", path, err)
	}
	wc, _, err := readWebConfig(path)
	if err != nil {
		return fmt.Errorf("web config file %s: %w", path, err)
	}
	if !protects(wc) {
		return fmt.Errorf("web config file %s: %w", path, errNoProtection)
	}
	return nil
}
