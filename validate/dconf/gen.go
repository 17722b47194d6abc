package dconf

import (
	"bytes"
	"strconv"
)

// GenerateClusterConf returns a valid cluster.conf of about the given number
// of lines (at least one full machine zone), for benchmarks and load tests.
// It uses what real rendered files use: an unbraced top level, nested maps
// with and without ":", quoted keys, arrays with and without commas,
// single-quoted Terraform outputs with a trailing comma, comments everywhere,
// ints, booleans, a PEM block string, and the
// chef.continuum.component_database settings the validator checks. The
// output depends only on lines.
func GenerateClusterConf(lines int) []byte {
	var b bytes.Buffer
	n := 0
	w := func(s string) {
		b.WriteString(s)
		b.WriteByte('\n')
		n++
	}
	w("# cluster.conf generated for benchmarks: do not edit")
	w("")
	w("provisioner {")
	w("  type: generic")
	w("}")
	w("")
	w("components: {")
	w("  api-server: 3")
	w("  job-manager = 2")
	w("  router: 2,")
	w("  \"package-manager\": 1")
	w("  kv-store: 3")
	w("  vault: 1")
	w("}")
	w("")
	w("chef: {")
	w("  \"continuum\": {")
	w("    \"cluster\": { \"name\": \"bench\", \"domain\": \"bench.example.com\", },")
	w("    \"component_database\": {")
	w("      \"migrate_store2_to_store3\": false")
	w("      \"dry_run\": true")
	w("      \"batch_size\": 500")
	w("    }")
	w("    \"router\": {")
	w("      \"http_port\": 8080")
	w("      \"ssl\": {")
	w("        \"enable\": true,")
	w("        \"tlshosts\": [")
	w("          {")
	w("            \"server_names\": [ \"*.bench.example.com\" ]")
	w("            \"certificate_chain\": (-----BEGIN CERTIFICATE-----")
	for range 12 {
		w("MIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJRTES")
	}
	w("-----END CERTIFICATE-----")
	w(")")
	w("          },")
	w("        ]")
	w("      }")
	w("    }")
	w("  }")
	w("}")
	w("")
	w("machines: {")
	for z := 0; n < lines-3 || z == 0; z++ {
		zs := strconv.Itoa(z)
		a, c := strconv.Itoa(z%250), strconv.Itoa(z/250%250)
		w("  # zone " + zs + ": central components")
		w("  zone_" + zs + ": {")
		w("    hosts: ['10." + c + "." + a + ".10', '10." + c + "." + a + ".11',]")
		w("    suitable_tags: [")
		w("      \"component-database\"")
		w("      \"api-server\", \"job-manager\"")
		w("      # \"stagehand\"")
		w("    ]")
		w("    \"metadata\" { rack: r" + zs + "; weight: 30.5; enabled: true }")
		w("    ssh_port = 22")
		w("  }")
	}
	w("}")
	return b.Bytes()
}
