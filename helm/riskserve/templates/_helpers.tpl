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
Content of the chart-made key file, one key per line. Keys given in auth.apiKeys win; otherwise
the key already stored in the cluster is kept (lookup; empty under `helm template`), and only on a
first install is a random key generated.
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
