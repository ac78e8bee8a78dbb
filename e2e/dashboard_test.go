package e2e

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var (
	quantileRE = regexp.MustCompile(`histogram_quantile\(\s*([0-9.]+)`)
	pctRE      = regexp.MustCompile(`\bp(\d{2,3})\b`)
)

// pct names a quantile as a panel title does: 0.95 → p95, 0.5 → p50.
func pct(q string) string {
	f, err := strconv.ParseFloat(q, 64)
	if err != nil {
		return "p?" + q
	}
	return "p" + strconv.FormatFloat(f*100, 'f', -1, 64)
}

// TestDashboardQuantilesMatchTitles: a panel computes exactly the
// percentiles its title names, and when it draws several, each series'
// legend says which one it is.
func TestDashboardQuantilesMatchTitles(t *testing.T) {
	_, dash := dashboardExprs(t)
	for _, p := range dash["panels"].([]any) {
		p := p.(map[string]any)
		title, _ := p["title"].(string)
		targets, _ := p["targets"].([]any)
		queried := map[string]bool{}
		type series struct{ q, legend string }
		var all []series
		for _, tg := range targets {
			tg := tg.(map[string]any)
			expr, _ := tg["expr"].(string)
			legend, _ := tg["legendFormat"].(string)
			for _, m := range quantileRE.FindAllStringSubmatch(expr, -1) {
				queried[pct(m[1])] = true
				all = append(all, series{pct(m[1]), legend})
			}
		}
		if len(queried) == 0 {
			continue
		}
		named := map[string]bool{}
		for _, m := range pctRE.FindAllStringSubmatch(title, -1) {
			named["p"+m[1]] = true
		}
		var q, n []string
		for k := range queried {
			q = append(q, k)
		}
		for k := range named {
			n = append(n, k)
		}
		sort.Strings(q)
		sort.Strings(n)
		if strings.Join(q, ",") != strings.Join(n, ",") {
			t.Errorf("panel %q computes %v but its title names %v", title, q, n)
		}
		if len(queried) > 1 {
			for _, s := range all {
				if !strings.Contains(s.legend, s.q) {
					t.Errorf("panel %q: the %s series' legend %q does not say %s", title, s.q, s.legend, s.q)
				}
			}
		}
	}
}
