package web_test

import (
	"context"
	"fmt"
	"io/fs"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"hilbench/harness/station/web"
	"hilbench/harness/station/web/webtest"
)

// scriptedStation stands in for the station runner: the test scripts its slots' states, and it
// answers the page's requests as a station would (stop: stopping; start: idle; operator: shown).
type scriptedStation struct {
	srv *web.Server

	mu    sync.Mutex
	snap  web.Snapshot
	calls []string
}

func (s *scriptedStation) update(f func(*web.Snapshot)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.snap)
	s.srv.Publish(s.snap)
}

func (s *scriptedStation) slot(snap *web.Snapshot, name string) *web.SlotState {
	for i := range snap.Slots {
		if snap.Slots[i].Name == name {
			return &snap.Slots[i]
		}
	}
	panic("no slot " + name)
}

func (s *scriptedStation) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

func (s *scriptedStation) StopSlot(name string) error {
	s.update(func(snap *web.Snapshot) {
		s.calls = append(s.calls, "StopSlot "+name)
		s.slot(snap, name).State = web.StateStopping
	})
	return nil
}

func (s *scriptedStation) StartSlot(name string) error {
	s.update(func(snap *web.Snapshot) {
		s.calls = append(s.calls, "StartSlot "+name)
		*s.slot(snap, name) = web.SlotState{Name: name, State: web.StateIdle}
	})
	return nil
}

func (s *scriptedStation) SetOperator(id string) error {
	s.update(func(snap *web.Snapshot) {
		s.calls = append(s.calls, "SetOperator "+id)
		snap.Operator = id
	})
	return nil
}

func (s *scriptedStation) Record(id string) ([]byte, error) {
	if strings.HasPrefix(id, "rec-") {
		return []byte(`{"id":"` + id + `","outcome":"PASS"}`), nil
	}
	return nil, fs.ErrNotExist
}

func (s *scriptedStation) Transcript(id string) ([]byte, error) {
	if strings.HasPrefix(id, "rec-") {
		return []byte("<b>not markup</b> transcript of " + id), nil
	}
	return nil, fs.ErrNotExist
}

// TestBrowser watches the page in headless Chromium: 4 slots go idle → running → PASS with
// their serials, one FAIL names its failing phase and message, counters and record links
// follow, stop and start on a slot reach the station and show on the tile, and the operator id
// is refused or taken.
func TestBrowser(t *testing.T) {
	ctx, cancel := webtest.Browser(t)
	defer cancel()

	st := &scriptedStation{}
	st.srv = web.New(st, web.Options{})
	ts := httptest.NewServer(st.srv.Handler())
	defer ts.Close()
	defer st.srv.Close() // ends the page's event stream, which ts.Close waits for

	slots := []string{"slot-1", "slot-2", "slot-3", "slot-4"}
	serial := func(i int) string { return fmt.Sprintf("SN-2026-%04d", 100+i) }
	st.update(func(snap *web.Snapshot) {
		snap.Station = "line-1"
		snap.Counters.SignaturesLeft = -1
		snap.Counters.Signer = "softdak: 1000 signatures budgeted"
		for _, n := range slots {
			snap.Slots = append(snap.Slots, web.SlotState{Name: n, State: web.StateIdle})
		}
	})
	webtest.Open(t, ctx, ts.URL)
	for _, n := range slots {
		webtest.WaitSlot(t, ctx, n, web.StateIdle)
		if got := webtest.SlotText(t, ctx, n, "verdict"); got != "IDLE" {
			t.Errorf("%s verdict %q, want IDLE", n, got)
		}
	}
	webtest.WaitFor(t, ctx, "signatures left unknown", `document.querySelector('[data-counter="signatures_left"]').textContent === 'unknown'`)

	// Running: each tile shows its DUT and phase, and the elapsed time ticks in the browser.
	started := time.Now().Add(-65 * time.Second)
	st.update(func(snap *web.Snapshot) {
		for i, n := range slots {
			*st.slot(snap, n) = web.SlotState{Name: n, State: web.StateRunning, DUT: serial(i), Phase: "provision", Started: started}
		}
	})
	for i, n := range slots {
		webtest.WaitSlot(t, ctx, n, web.StateRunning)
		if dut, phase := webtest.SlotText(t, ctx, n, "dut"), webtest.SlotText(t, ctx, n, "phase"); dut != serial(i) || phase != "provision" {
			t.Errorf("%s running: DUT %q phase %q, want %s provision", n, dut, phase, serial(i))
		}
	}
	first := webtest.SlotText(t, ctx, "slot-1", "elapsed")
	if !strings.HasPrefix(first, "1:0") {
		t.Errorf("slot-1 elapsed %q, want about 1:05", first)
	}
	checkContrast(t, ctx, "running")
	webtest.WaitFor(t, ctx, "slot-1's elapsed time to tick", webtest.FieldExpr("slot-1", "elapsed")+` !== `+fmt.Sprintf("%q", first))

	// Three PASS, one FAIL naming its phase.
	ended := time.Now()
	st.update(func(snap *web.Snapshot) {
		for i, n := range slots {
			sl := st.slot(snap, n)
			sl.Ended, sl.Phase, sl.RecordID = ended, "", fmt.Sprintf("rec-%d", i)
			sl.State = web.StatePass
			outcome := "PASS"
			if n == "slot-3" {
				sl.State, sl.FailedPhase, sl.Message = web.StateFail, "verify", `chain does not verify: x509: certificate signed by unknown authority <img src=x onerror="document.body.dataset.pwned=1">`
				outcome = "FAIL"
			}
			snap.Recent = append([]web.RecordLink{{ID: sl.RecordID, DUT: sl.DUT, Slot: n, Outcome: outcome, Ended: ended}}, snap.Recent...)
		}
		snap.Counters.Passed, snap.Counters.Failed, snap.Counters.Yield, snap.Counters.DUTsPerHour = 3, 1, 0.75, 52.3
		snap.Counters.SignaturesLeft = 996
	})
	for i, n := range slots {
		want, verdict := web.StatePass, "PASS"
		if n == "slot-3" {
			want, verdict = web.StateFail, "FAIL"
		}
		webtest.WaitSlot(t, ctx, n, want)
		if got := webtest.SlotText(t, ctx, n, "verdict"); got != verdict {
			t.Errorf("%s verdict %q, want %s", n, got, verdict)
		}
		if got := webtest.SlotText(t, ctx, n, "dut"); got != serial(i) {
			t.Errorf("%s DUT %q, want %s", n, got, serial(i))
		}
	}
	checkContrast(t, ctx, "PASS and FAIL")
	if got := webtest.SlotText(t, ctx, "slot-3", "failed_phase"); got != "verify" {
		t.Errorf("FAIL tile's phase %q, want verify", got)
	}
	// A device's words are shown as text: the markup in the message is neither parsed nor run.
	if got := webtest.SlotText(t, ctx, "slot-3", "message"); !strings.Contains(got, `certificate signed by unknown authority <img src=x onerror=`) {
		t.Errorf("FAIL tile's message %q", got)
	}
	if injected, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelectorAll('img').length > 0 || document.body.dataset.pwned !== undefined`)); err != nil || injected {
		t.Errorf("markup in a failure message became part of the page (%v)", err)
	}
	label, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(`+webtest.TileExpr("slot-3")+`).getAttribute('role') + '|' + (`+webtest.TileExpr("slot-3")+`).getAttribute('aria-label')`))
	if err != nil || label != "region|Slot slot-3: FAIL" {
		t.Errorf("FAIL tile's role|aria-label %q (%v)", label, err)
	}
	failureHidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(`+webtest.TileExpr("slot-1")+`).querySelector('[data-field="failure"]').hidden`))
	if err != nil || !failureHidden {
		t.Errorf("a PASS tile shows a failure box (%v)", err)
	}
	counters, err := chromedp.Run(ctx, chromedp.Evaluate[string](`['passed','failed','yield','duts_per_hour','signatures_left','signer'].map(c => document.querySelector('[data-counter="' + c + '"]').textContent).join('|')`))
	if want := "3|1|75.0 %|52.3|996|softdak: 1000 signatures budgeted"; err != nil || counters != want {
		t.Errorf("counters %q (%v), want %q", counters, err, want)
	}
	links, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('#recent-rows tr')].map(r => r.dataset.record + ' ' + r.querySelector('[data-link=record]').getAttribute('href') + ' ' + r.querySelector('[data-link=transcript]').getAttribute('href')).join(',')`))
	if want := "rec-3 /records/rec-3 /records/rec-3/transcript,rec-2 /records/rec-2 /records/rec-2/transcript,rec-1 /records/rec-1 /records/rec-1/transcript,rec-0 /records/rec-0 /records/rec-0/transcript"; err != nil || links != want {
		t.Errorf("record links %q (%v), want %q (newest first)", links, err, want)
	}

	// Stop a slot: the station hears it, the tile shows stopping, then stopped with a Start button.
	webtest.ClickSlotAction(t, ctx, "slot-2")
	webtest.WaitSlot(t, ctx, "slot-2", web.StateStopping)
	checkContrast(t, ctx, "stopping")
	if got := webtest.SlotText(t, ctx, "slot-2", "action"); got != "Stopping…" {
		t.Errorf("stopping tile's button %q", got)
	}
	st.update(func(snap *web.Snapshot) { st.slot(snap, "slot-2").State = web.StateStopped })
	webtest.WaitSlot(t, ctx, "slot-2", web.StateStopped)
	webtest.WaitFor(t, ctx, "slot-2's Start button", webtest.FieldExpr("slot-2", "action")+` === 'Start'`)
	if got := webtest.SlotText(t, ctx, "slot-2", "verdict"); got != "STOPPED" {
		t.Errorf("stopped tile's verdict %q", got)
	}
	webtest.ClickSlotAction(t, ctx, "slot-2")
	webtest.WaitSlot(t, ctx, "slot-2", web.StateIdle)
	if got, want := st.Calls(), []string{"StopSlot slot-2", "StartSlot slot-2"}; !slices.Equal(got, want) {
		t.Errorf("the station got %q, want %q", got, want)
	}
	// The other slots kept their verdicts.
	webtest.WaitSlot(t, ctx, "slot-3", web.StateFail)

	// Operator: a bad id is refused with the server's reason and changes nothing; a good one shows.
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("operator-input"), "op 7"), chromedp.Click(chromedp.ID("operator-set"))); err != nil {
		t.Fatal(err)
	}
	webtest.WaitFor(t, ctx, "the refusal of a bad operator id", `!document.getElementById('alert').hidden && document.getElementById('alert').textContent.includes('only letters, digits')`)
	checkContrast(t, ctx, "alert")
	// (chromedp's Clear and SetValue(…, "") leave a typed value in place: clear it as a script would.)
	clear := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[string](`document.getElementById('operator-input').value = ''`)(ctx, tg)
		return err
	})
	if err := chromedp.Do(ctx, clear, chromedp.SendKeys(chromedp.ID("operator-input"), "op-7"), chromedp.Click(chromedp.ID("operator-set"))); err != nil {
		t.Fatal(err)
	}
	webtest.WaitFor(t, ctx, "operator op-7 shown", `document.getElementById('operator-current').dataset.operator === 'op-7' && document.getElementById('alert').hidden`)
	if got := st.Calls(); len(got) != 3 || got[2] != "SetOperator op-7" {
		t.Errorf("the station got %q, want one SetOperator op-7 after the slot calls", got)
	}

	// The record and transcript links open what the station holds; the transcript as text.
	// RunResponse waits for the navigation the click starts.
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`tr[data-record="rec-2"] a[data-link="transcript"]`)))
	if err != nil || resp.Status != 200 || !strings.HasPrefix(resp.MimeType, "text/plain") {
		t.Fatalf("opening the transcript link: %v %+v", err, resp)
	}
	webtest.WaitFor(t, ctx, "the transcript of rec-2", `location.pathname === '/records/rec-2/transcript' && document.body.innerText.includes('<b>not markup</b> transcript of rec-2')`)
	if err := chromedp.Do(ctx, chromedp.Navigate(ts.URL+"/records/rec-2")); err != nil {
		t.Fatal(err)
	}
	webtest.WaitFor(t, ctx, "the record rec-2", `document.body.innerText.includes('"id":"rec-2"')`)
}

// TestBrowserWithToken: on a network the page needs its token; one visit with ?token= sets
// the cookie, the address loses the token, and the live stream and the buttons work with it.
func TestBrowserWithToken(t *testing.T) {
	ctx, cancel := webtest.Browser(t)
	defer cancel()

	token := web.NewToken()
	st := &scriptedStation{}
	st.srv = web.New(st, web.Options{Token: token})
	ts := httptest.NewServer(st.srv.Handler())
	defer ts.Close()
	defer st.srv.Close()
	st.update(func(snap *web.Snapshot) {
		snap.Slots = []web.SlotState{{Name: "slot-1", State: web.StateIdle}}
	})

	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(ts.URL+"/"))
	if err != nil || resp.Status != 401 {
		t.Fatalf("the page without its token: %v %+v", err, resp)
	}
	webtest.Open(t, ctx, ts.URL+"/?token="+token)
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || strings.Contains(loc, token) {
		t.Fatalf("the address after the token visit: %q (%v)", loc, err)
	}
	webtest.WaitSlot(t, ctx, "slot-1", web.StateIdle)
	webtest.WaitFor(t, ctx, "the live stream", `document.getElementById('connection').dataset.connected === 'true'`)
	webtest.ClickSlotAction(t, ctx, "slot-1")
	webtest.WaitSlot(t, ctx, "slot-1", web.StateStopping)
	if got := st.Calls(); !slices.Equal(got, []string{"StopSlot slot-1"}) {
		t.Fatalf("the station got %q", got)
	}
}

// contrastJS finds the text on the page with the lowest contrast against its background
// (WCAG 2.2's relative luminance and contrast ratio, from the colours the browser computed).
const contrastJS = `(() => {
	const rgba = (s) => s.match(/[\d.]+/g).map(Number);
	const lum = ([r, g, b]) => [r, g, b].map((c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; })
		.reduce((a, c, i) => a + c * [0.2126, 0.7152, 0.0722][i], 0);
	const background = (el) => {
		for (; el; el = el.parentElement) {
			const c = rgba(getComputedStyle(el).backgroundColor);
			if (c.length < 4 || c[3] > 0) return c;
		}
		return [255, 255, 255];
	};
	let worst = { ratio: 99, what: '' };
	for (const el of document.querySelectorAll('body *')) {
		const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
		if (!own || el.closest('[hidden]') || el.closest('.visually-hidden') || el.offsetParent === null) continue;
		const a = lum(rgba(getComputedStyle(el).color)), b = lum(background(el));
		const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
		if (ratio < worst.ratio) worst = { ratio, what: el.tagName + ' "' + el.textContent.trim().slice(0, 40) + '"' };
	}
	return worst.ratio.toFixed(2) + ' ' + worst.what;
})()`

// checkContrast fails the test when any text shown is below WCAG's 4.5:1.
func checkContrast(t *testing.T, ctx context.Context, stage string) {
	t.Helper()
	worst, err := chromedp.Run(ctx, chromedp.Evaluate[string](contrastJS))
	if err != nil {
		t.Fatalf("contrast (%s): %v", stage, err)
	}
	var ratio float64
	fmt.Sscanf(worst, "%g", &ratio)
	if ratio < 4.5 {
		t.Errorf("contrast (%s): %s is below 4.5:1", stage, worst)
	}
}
