{{/*
Names, labels and small shared values of the riskserve chart.
*/}}

{{/* Chart name, overridable with nameOverride. */}}
{{- define "riskserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full object name: fullnameOverride, else the release name, prefixed to the chart name unless it
already contains it. Truncated to 63 characters (DNS label limit).
*/}}
{{- define "riskserve.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "riskserve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the server pods: stable for the life of the release. */}}
{{- define "riskserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "riskserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{/* Labels common to every object of the release. */}}
{{- define "riskserve.labels" -}}
helm.sh/chart: {{ include "riskserve.chart" . }}
{{ include "riskserve.selectorLabels" . }}
app.kubernetes.io/version: {{ include "riskserve.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/part-of: riskserve
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels of objects that are not the server (test pod, dashboards): the common labels with another
component, so they never match the server's selector.
*/}}
{{- define "riskserve.componentLabels" -}}
{{- $labels := include "riskserve.labels" .root | fromYaml }}
{{- $_ := set $labels "app.kubernetes.io/component" .component }}
{{- toYaml $labels }}
{{- end }}

{{/* The `release` label kube-prometheus-stack selects monitoring objects by (empty: none). */}}
{{- define "riskserve.prometheusReleaseLabel" -}}
{{- with .Values.monitoring.prometheusRelease -}}
release: {{ . | quote }}
{{- end }}
{{- end }}

{{/* ServiceAccount name. */}}
{{- define "riskserve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "riskserve.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image tag: image.tag, else the chart's appVersion. */}}
{{- define "riskserve.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* Image reference, pinned by digest when one is given. */}}
{{- define "riskserve.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository (include "riskserve.imageTag" .) .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "riskserve.imageTag" .) }}
{{- end }}
{{- end }}

{{/* Whether the pods mount an API-key Secret at all. */}}
{{- define "riskserve.authEnabled" -}}
{{- if not .Values.auth.disabled }}true{{- end }}
{{- end }}

{{/* Whether this chart creates the API-key Secret (auth on and no existingSecret). */}}
{{- define "riskserve.createSecret" -}}
{{- if and (not .Values.auth.disabled) (not .Values.auth.existingSecret) }}true{{- end }}
{{- end }}

{{/* Name of the Secret with the API keys. */}}
{{- define "riskserve.secretName" -}}
{{- default (printf "%s-api-keys" (include "riskserve.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/* Directory the API-key Secret is mounted at; RISKSERVE_API_KEYS_FILE is the file inside it. */}}
{{- define "riskserve.apiKeysDir" -}}
/etc/riskserve/api-keys
{{- end }}

{{/*
Content of the chart-made key file, one line per key (`<key or sha256:hex> [name=<id>]
[models=<m1>,<m2>|*] [rate=<req/s>]`). Lines given in auth.apiKeys win; otherwise the file already
stored in the cluster is kept whole, lines added by hand included (lookup; empty under
`helm template`), and only on a first install is a random key generated.
*/}}
{{- define "riskserve.apiKeysFile" -}}
{{- if .Values.auth.apiKeys }}
{{- join "\n" .Values.auth.apiKeys }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "riskserve.secretName" .) }}
{{- $stored := "" }}
{{- if and $existing $existing.data }}
{{- $stored = index $existing.data .Values.auth.secretKey | default "" | b64dec }}
{{- end }}
{{- $stored | trimSuffix "\n" | default (randAlphaNum 40) }}
{{- end }}
{{- end }}

{{/* Rules file rendered into the PrometheusRule: parsed here so a broken file fails the render. */}}
{{- define "riskserve.rulesFile" -}}
files/riskserve.rules.yaml
{{- end }}

{{/*
One ConfigMap value from a values entry: a map becomes `name=value` pairs joined by commas (sorted
by name), a list is joined by commas, a whole number stays whole (never 1e+07, which pydantic
would refuse as an int), anything else is its string form.
*/}}
{{- define "riskserve.envValue" -}}
{{- if kindIs "map" . }}
{{- $pairs := list }}
{{- range $name, $value := . }}
{{- $pairs = append $pairs (printf "%s=%s" $name (include "riskserve.envValue" $value)) }}
{{- end }}
{{- join "," $pairs }}
{{- else if kindIs "slice" . }}
{{- $items := list }}
{{- range . }}
{{- $items = append $items (include "riskserve.envValue" .) }}
{{- end }}
{{- join "," $items }}
{{- else if and (kindIs "float64" .) (eq (floor .) .) }}
{{- int64 . | toString }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
Every environment variable of the ConfigMap, as YAML: each `config` key as RISKSERVE_<UPPER_SNAKE>
(the one mapping from values to riskserve/settings.py), plus the settings whose values key lives
in another section because the chart uses it there too (ports, auth switch, shadow rate).
*/}}
{{- define "riskserve.env" -}}
{{- $env := dict }}
{{- range $key, $value := .Values.config }}
{{- $_ := set $env (printf "RISKSERVE_%s" ($key | snakecase | upper)) (include "riskserve.envValue" $value) }}
{{- end }}
{{- $_ := set $env "BENTOML_DO_NOT_TRACK" "true" }}
{{- /* bentoml serve reads BENTOML_PORT; RISKSERVE_HTTP_PORT keeps the settings in agreement. */}}
{{- $_ = set $env "BENTOML_PORT" (include "riskserve.envValue" .Values.containerPorts.http) }}
{{- $_ = set $env "RISKSERVE_HTTP_PORT" (include "riskserve.envValue" .Values.containerPorts.http) }}
{{- $_ = set $env "RISKSERVE_GRPC_PORT" (include "riskserve.envValue" .Values.containerPorts.grpc) }}
{{- /* In a pod gRPC listens on every interface; the Service and NetworkPolicy decide who reaches it. */}}
{{- $_ = set $env "RISKSERVE_GRPC_HOST" "0.0.0.0" }}
{{- $_ = set $env "RISKSERVE_AUTH_DISABLED" (include "riskserve.envValue" .Values.auth.disabled) }}
{{- $_ = set $env "RISKSERVE_SHADOW_RATE" (include "riskserve.envValue" .Values.shadow.rate) }}
{{- toYaml $env }}
{{- end }}

{{/*
One probe of the server container from probes.<name>, passed whole. Exactly one handler is
required: Helm merges user values into the defaults, so a user's grpc probe next to the default
httpGet would reach the API server as two handlers and be refused there, far from the cause.
An empty `grpc: {}` gets the container's gRPC port (the probe's port must be a number).
*/}}
{{- define "riskserve.probe" -}}
{{- $probe := omit .probe "enabled" }}
{{- $handlers := list }}
{{- range $handler := list "httpGet" "grpc" "tcpSocket" "exec" }}
{{- if and (hasKey $probe $handler) (not (kindIs "invalid" (get $probe $handler))) }}
{{- $handlers = append $handlers $handler }}
{{- end }}
{{- end }}
{{- if ne (len $handlers) 1 }}
{{- fail (printf "probes.%s needs exactly one handler (httpGet, grpc, tcpSocket or exec), found %d %v: Helm merges your values into the defaults, so set the default one to null (e.g. probes.%s.httpGet: null) when you give another" .name (len $handlers) $handlers .name) }}
{{- end }}
{{- if and (hasKey $probe "grpc") (not $probe.grpc.port) }}
{{- $_ := set $probe "grpc" (merge (dict "port" (int .root.Values.containerPorts.grpc)) $probe.grpc) }}
{{- end }}
{{- toYaml $probe }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the preStop sleep plus the longest a request accepted before
SIGTERM may take to start its answer (config.requestTimeoutS), plus 5 s for the workers to exit.
An explicit value shorter than sleep + timeout would kill requests the pod accepted: refused.
*/}}
{{- define "riskserve.terminationGracePeriodSeconds" -}}
{{- $sleep := int .Values.preStopSleepSeconds }}
{{- $timeout := ceil .Values.config.requestTimeoutS | int }}
{{- $given := .Values.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $given }}
{{- add $sleep $timeout 5 }}
{{- else if lt (int $given) (add $sleep $timeout) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be at least preStopSleepSeconds (%d) + config.requestTimeoutS (%d) = %d, or requests in flight at shutdown are killed; leave it null to compute it" (int $given) $sleep $timeout (add $sleep $timeout)) }}
{{- else }}
{{- int $given }}
{{- end }}
{{- end }}
