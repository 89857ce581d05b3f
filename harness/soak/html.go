package soak

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"

	"hilbench/harness/atomicfile"
)

// The morning page: one self-contained HTML file (inline CSS and SVG, no script, nothing
// fetched), so it opens from a CI artifact or a mail attachment as it is.

var pageTmpl = template.Must(template.New("soak").Funcs(template.FuncMap{
	"pct": func(f float64) string { return fmt.Sprintf("%.2f%%", 100*f) },
	"ms":  func(f float64) string { return fmt.Sprintf("%.1f", f) },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>hil soak: {{.Verdict}}</title>
<style>
body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}
.bad{background:#fdd}.good{background:#dfd}
pre{background:#f6f6f6;padding:.5em;overflow-x:auto;max-height:20em;font-size:85%}
svg{display:block;margin:.3em 0 1em}
</style></head><body>
<h1>hil soak: {{.Verdict}}</h1>
<p>{{.R.Cycles}} cycles on {{len .R.Targets}} target(s), seed {{.R.Seed}}, faults: {{.Faults}}{{if .R.NoiseRate}} (noise {{.R.NoiseRate}} byte error rate){{end}};
{{.R.Retries}} retries per step; started {{.Started}}, took {{.Took}}.</p>
<h2>Identity</h2>
<table><tr><th>counter</th><th>count</th></tr>
{{range .Counters}}<tr class="{{if .N}}bad{{else}}good{{end}}"><td>{{.Name}}</td><td>{{.N}}</td></tr>
{{end}}</table>
<p>{{.R.Counters.Runs}} steps, {{.R.Counters.StepFailures}} failed after their retries, {{.R.Counters.Retries}} retries, {{.R.Counters.Flakes}} flakes (failed, then passed on a retry), {{.R.Counters.ProvisionFailures}} targets not provisioned.</p>
<h2>Steps</h2>
<table><tr><th>step</th><th>runs</th><th>failures</th><th>retries</th><th>flakes</th><th>flake rate</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th></tr>
{{range .R.Steps}}<tr{{if .Failures}} class="bad"{{end}}><td>{{.Step}}</td><td>{{.Runs}}</td><td>{{.Failures}}</td><td>{{.Retries}}</td><td>{{.Flakes}}</td><td>{{pct .FlakeRate}}</td><td>{{ms .P50ms}}</td><td>{{ms .P99ms}}</td><td>{{ms .MaxMs}}</td></tr>
{{end}}</table>
<h2>Failures over cycles</h2>
{{.FailurePlot}}
<h2>Step times</h2>
<p>Distribution of each step's time (logarithmic axis; a step's time includes the identity check after it). The lines mark p50 and p99.</p>
{{range .TimePlots}}<h3>{{.Step}}</h3>{{.SVG}}{{end}}
<h2>Targets</h2>
{{range .R.Targets}}<h3>{{.Name}}{{if .Family}} ({{.Family}}{{if .Simulated}}, simulated{{end}}){{end}}: {{.Cycles}} cycles{{if .Stopped}}, stopped: {{.Stopped}}{{end}}</h3>
<table><tr><th>step</th><th>runs</th><th>failures</th><th>retries</th><th>flakes</th><th>p50 ms</th><th>p99 ms</th></tr>
{{range .Steps}}<tr{{if .Failures}} class="bad"{{end}}><td>{{.Step}}</td><td>{{.Runs}}</td><td>{{.Failures}}</td><td>{{.Retries}}</td><td>{{.Flakes}}</td><td>{{ms .P50ms}}</td><td>{{ms .P99ms}}</td></tr>
{{end}}</table>
{{range .Steps}}{{with .First}}<p>First failure of {{.Step}} (cycle {{.Cycle}}, {{.Kind}}): {{.Error}}</p>{{if .Transcript}}<pre>{{.Transcript}}</pre>{{end}}{{end}}{{end}}
{{end}}
</body></html>
`))

type pageCounter struct {
	Name string
	N    int
}

type timePlot struct {
	Step string
	SVG  template.HTML
}

// WriteHTML writes the morning page.
func (r *Report) WriteHTML(path string) error {
	data, err := r.html()
	if err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o644)
}

func (r *Report) html() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	verdict := "passed"
	if r.Counters.Identity() > 0 || r.Counters.ProvisionFailures > 0 {
		verdict = "FAILED"
	} else if r.Counters.StepFailures > 0 {
		verdict = "passed with flaky steps"
	}
	faults := strings.Join(r.Faults, ", ")
	if faults == "" {
		faults = "none"
	}
	page := struct {
		R           *Report
		Verdict     string
		Faults      string
		Started     string
		Took        time.Duration
		Counters    []pageCounter
		FailurePlot template.HTML
		TimePlots   []timePlot
	}{
		R: r, Verdict: verdict, Faults: faults, Started: r.Started.UTC().Format(time.RFC3339),
		Took: r.Finished.Sub(r.Started).Round(time.Second),
		Counters: []pageCounter{{"torn_chains", r.Counters.TornChains}, {"changed_chains", r.Counters.ChangedChains},
			{"double_signatures", r.Counters.DoubleSignatures}, {"ledger_inconsistencies", r.Counters.LedgerInconsistencies}},
		FailurePlot: failurePlot(r.FailuresByCycle),
	}
	for _, s := range r.Steps {
		page.TimePlots = append(page.TimePlots, timePlot{Step: s.Step, SVG: timeHistogram(s.durations, s.P50ms, s.P99ms)})
	}
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, page); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

const (
	plotW, plotH = 720, 160
	padL, padB   = 50, 30
	padT, padR   = 10, 10
)

// failurePlot is a bar chart of failures per cycle (cycles grouped when there are more than 240).
func failurePlot(byCycle []int) template.HTML {
	n := len(byCycle)
	if n == 0 {
		return ""
	}
	group := (n + 239) / 240
	bars := make([]int, (n+group-1)/group)
	peak := 0
	for c, f := range byCycle {
		bars[c/group] += f
		peak = max(peak, bars[c/group])
	}
	var b strings.Builder
	w := float64(plotW-padL-padR) / float64(len(bars))
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" aria-label="failures over cycles">`, plotW, plotH)
	axes(&b)
	top := max(peak, 1)
	for i, v := range bars {
		if v == 0 {
			continue
		}
		h := float64(v) / float64(top) * float64(plotH-padT-padB)
		x := float64(padL) + float64(i)*w
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#c33"><title>cycles %d-%d: %d</title></rect>`,
			x, float64(plotH-padB)-h, math.Max(w-0.5, 0.5), h, i*group, min((i+1)*group, n)-1, v)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" text-anchor="end">0</text><text x="%d" y="%d" font-size="11" text-anchor="end">%d</text>`,
		padL-4, plotH-padB, plotW-padR, plotH-8, n-1)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" text-anchor="end">%d</text>`, padL-4, padT+10, top)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11">cycle (0: provisioning)</text>`, padL, plotH-8)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// timeHistogram is a histogram of step times on a logarithmic axis with p50 and p99 marked.
func timeHistogram(ds []time.Duration, p50, p99 float64) template.HTML {
	if len(ds) == 0 {
		return ""
	}
	lo, hi := math.Inf(1), 0.0
	for _, d := range ds {
		v := math.Max(ms(d), 0.1)
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	lo, hi = math.Log10(lo), math.Log10(hi)
	if hi-lo < 0.5 {
		lo, hi = lo-0.25, hi+0.25
	}
	const bins = 40
	counts := make([]int, bins)
	peak := 0
	pos := func(v float64) int {
		i := int((math.Log10(math.Max(v, 0.1)) - lo) / (hi - lo) * bins)
		return min(max(i, 0), bins-1)
	}
	for _, d := range ds {
		i := pos(ms(d))
		counts[i]++
		peak = max(peak, counts[i])
	}
	var b strings.Builder
	w := float64(plotW-padL-padR) / bins
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" aria-label="step time distribution">`, plotW, plotH)
	axes(&b)
	for i, c := range counts {
		if c == 0 {
			continue
		}
		h := float64(c) / float64(peak) * float64(plotH-padT-padB)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#47a"><title>%d</title></rect>`,
			float64(padL)+float64(i)*w, float64(plotH-padB)-h, w-1, h, c)
	}
	xOf := func(v float64) float64 {
		return float64(padL) + (math.Log10(math.Max(v, 0.1))-lo)/(hi-lo)*float64(plotW-padL-padR)
	}
	for _, m := range []struct {
		label string
		v     float64
	}{{"p50", p50}, {"p99", p99}} {
		x := xOf(m.v)
		// Labels read leftwards near the right edge, and p99's sits lower than p50's.
		lx, anchor := x+3, "start"
		if x > plotW-120 {
			lx, anchor = x-3, "end"
		}
		ly := padT + 12
		if m.label == "p99" {
			ly += 14
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e80" stroke-dasharray="4 2"/><text x="%.1f" y="%d" font-size="11" fill="#b60" text-anchor="%s">%s %.0f ms</text>`,
			x, padT, x, plotH-padB, lx, ly, anchor, m.label, m.v)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11">%.0f ms</text><text x="%d" y="%d" font-size="11" text-anchor="end">%.0f ms</text>`,
		padL, plotH-8, math.Pow(10, lo), plotW-padR, plotH-8, math.Pow(10, hi))
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" text-anchor="end">%d</text>`, padL-4, padT+10, peak)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func axes(b *strings.Builder) {
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444"/><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444"/>`,
		padL, plotH-padB, plotW-padR, plotH-padB, padL, padT, padL, plotH-padB)
}
