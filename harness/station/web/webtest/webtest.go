// Package webtest drives the station's operator page in headless Chromium (Debian's chromium,
// through github.com/chromedp/chromedp) for browser tests.
//
// Use it from a test:
//
//	ctx, cancel := webtest.Browser(t) // skips, or fails with CI=true, when chromium is missing
//	defer cancel()
//	webtest.Open(t, ctx, httpServer.URL)
//	webtest.WaitSlot(t, ctx, "slot-1", "pass")
//	if got := webtest.SlotText(t, ctx, "slot-1", "dut"); got != serial { ... }
//	webtest.ClickSlotAction(t, ctx, "slot-1") // the tile's Stop or Start button
//
// Every wait is on a DOM condition (a JavaScript predicate polled by the browser), never a
// sleep; it fails the test naming what it waited for and every tile's state.
//
// The page's hooks: each tile is an element with data-slot="NAME", data-state="STATE" (the
// SlotState's state), role="region" and aria-label "Slot NAME: VERDICT"; its fields are
// descendants with data-field="dut", "phase", "elapsed", "verdict", "failed_phase", "message",
// "action" (the stop/start button; aria-label "Stop slot NAME" or "Start slot NAME"). Counters
// are data-counter="passed" etc.; the last records are rows with data-record="ID" holding links
// with data-link="record" and data-link="transcript"; the operator shown is
// #operator-current's data-operator; refusals appear in #alert (role="alert"); <body>'s
// data-version counts the snapshots the page has received; #connection's data-connected is
// "true" while the event stream is open.
//
// The page's event stream holds its HTTP request open: before closing an httptest.Server that
// serves the page, call the web.Server's Close (or stop the browser), or Close waits for it.
package webtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Timeout bounds one Browser's whole life (the test's own deadline is shorter when it has one).
const Timeout = 3 * time.Minute

// WaitTimeout bounds one wait for a DOM condition: generous, as the machine may be loaded; a
// wait that passes returns as soon as the condition holds.
const WaitTimeout = 60 * time.Second

// ExecPath finds the browser: $HIL_CHROMIUM when set, else chromium or chromium-browser on $PATH.
func ExecPath() (string, error) {
	if p := os.Getenv("HIL_CHROMIUM"); p != "" {
		return exec.LookPath(p)
	}
	var err error
	for _, name := range []string{"chromium", "chromium-browser"} {
		var p string
		if p, err = exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", err
}

// Browser starts headless Chromium with a fresh profile and returns a context on its tab.
// Without a browser the test fails when CI=true (CI installs it) and is skipped elsewhere,
// saying what to install. cancel stops the browser; it also runs at the test's cleanup.
func Browser(t testing.TB) (context.Context, context.CancelFunc) {
	t.Helper()
	path, err := ExecPath()
	if err != nil {
		msg := fmt.Sprintf("browser test needs Debian's chromium (apt-get install chromium, or scripts/deps.sh; or set HIL_CHROMIUM): %v", err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPED: " + msg)
	}
	out := &syncBuffer{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox refuses to start
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(out),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	// The first Run starts the browser; it must not carry a timeout (that would stop the
	// browser when it ends), so the limit goes on the context handed back.
	if err := chromedp.Do(browserCtx); err != nil {
		cancelBrowser()
		cancelAlloc()
		t.Fatalf("starting %s: %v\nits output:\n%s", path, err, out.String())
	}
	limit := Timeout
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok && time.Until(dl)-10*time.Second < limit {
			limit = max(time.Until(dl)-10*time.Second, time.Second)
		}
	}
	ctx, cancelTimeout := context.WithTimeout(browserCtx, limit)
	var once sync.Once
	cancel := func() {
		once.Do(func() {
			cancelTimeout()
			cancelBrowser()
			cancelAlloc()
		})
	}
	t.Cleanup(cancel)
	return ctx, cancel
}

// Open loads the page at url and waits until its script has received the first snapshot.
func Open(t testing.TB, ctx context.Context, url string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("opening %s: %v", url, err)
	}
	WaitFor(t, ctx, "the page's first snapshot", `Number(document.body.dataset.version) > 0`)
}

// WaitFor waits until the JavaScript expression is truthy in the page; what names the
// condition in the failure.
func WaitFor(t testing.TB, ctx context.Context, what, expr string) {
	t.Helper()
	// A navigation replaces the page's JavaScript context; a poll started across it fails
	// with "Cannot find context" and is started again once chromedp knows the new page.
	var err error
	for deadline := time.Now().Add(WaitTimeout); ; {
		_, err = chromedp.Run(ctx, chromedp.Poll[bool](
			"!!("+expr+")", chromedp.WithPollingTimeout(WaitTimeout)))
		if err == nil || !strings.Contains(err.Error(), "Cannot find context with specified id") || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err != nil {
		t.Fatalf("waiting for %s: %v\nthe page's tiles: %s", what, err, Tiles(ctx))
	}
}

// Tiles describes every tile (slot=state, its text) for failure messages.
func Tiles(ctx context.Context) string {
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`[...document.querySelectorAll('[data-slot]')].map(e => e.dataset.slot + '=' + e.dataset.state + ' [' + e.innerText.replace(/\s+/g, ' ') + ']').join('; ') + ' | alert: ' + document.getElementById('alert')?.textContent`))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return s
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TileExpr is a JavaScript expression for slot name's tile element (undefined when absent).
func TileExpr(name string) string {
	return `[...document.querySelectorAll('[data-slot]')].find(e => e.dataset.slot === ` + jsString(name) + `)`
}

// FieldExpr is a JavaScript expression for the text of one field of slot name's tile
// (undefined when the tile is absent).
func FieldExpr(name, field string) string {
	return `(` + TileExpr(name) + `)?.querySelector('[data-field=` + jsString(field) + `]')?.textContent`
}

// WaitSlot waits until slot name's tile shows state (data-state).
func WaitSlot(t testing.TB, ctx context.Context, name, state string) {
	t.Helper()
	WaitFor(t, ctx, fmt.Sprintf("slot %s to be %s", name, state),
		`(`+TileExpr(name)+`)?.dataset.state === `+jsString(state))
}

// SlotText returns the text of one field of slot name's tile.
func SlotText(t testing.TB, ctx context.Context, name, field string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(`+FieldExpr(name, field)+`) ?? ''`))
	if err != nil {
		t.Fatalf("reading slot %s's %s: %v", name, field, err)
	}
	return strings.TrimSpace(s)
}

// ClickSlotAction clicks slot name's Stop/Start button once it is enabled.
func ClickSlotAction(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	sel := chromedp.CSS(`[data-slot=` + jsString(name) + `] button[data-field="action"]`)
	if err := chromedp.Do(ctx, chromedp.WaitEnabled(sel), chromedp.Click(sel)); err != nil {
		t.Fatalf("clicking slot %s's button: %v\nthe page's tiles: %s", name, err, Tiles(ctx))
	}
}

// syncBuffer collects the browser's output from its reader goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
