{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "hyp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource name: fullnameOverride, else release name (+ chart name when it is not already in it). */}}
{{- define "hyp.fullname" -}}
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

{{- define "hyp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hyp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hyp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hyp.labels" -}}
helm.sh/chart: {{ include "hyp.chart" . }}
{{ include "hyp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hyp
{{- end }}

{{- define "hyp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hyp.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "hyp.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
terminationGracePeriodSeconds: drain delay + drain timeout + margin. The
preStop hook and the drain after SIGTERM both run inside this budget; past it
the kubelet sends SIGKILL.
*/}}
{{- define "hyp.gracePeriodSeconds" -}}
{{- add .Values.drain.delaySeconds .Values.drain.timeoutSeconds .Values.drain.graceMarginSeconds }}
{{- end }}

{{/*
CPUs the container may use, rounded up (at least 1): limits.cpu, else
requests.cpu; empty when neither is set. hyp's own `workers: 0` counts the
node's CPUs capped by the CPU quota, so without a CPU limit a pod requesting
100m on a 64-CPU node would start 64 workers (and meet its memory limit).
*/}}
{{- define "hyp.podCpus" -}}
{{- $resources := .Values.resources | default dict }}
{{- $cpu := dig "limits" "cpu" "" $resources | default (dig "requests" "cpu" "" $resources) }}
{{- if $cpu }}
{{- $text := toString $cpu }}
{{- $cores := 0.0 }}
{{- if hasSuffix "m" $text }}
{{- $cores = divf (trimSuffix "m" $text | float64) 1000 }}
{{- else }}
{{- $cores = float64 $text }}
{{- end }}
{{- max 1 (int (ceil $cores)) }}
{{- end }}
{{- end }}

{{/*
hyp.yaml: the user's `config` with the chart-owned keys laid over it (listen
addresses must match the container ports and probes; drain timings must match
the grace period; the PID file must be under the writable /tmp).
*/}}
{{- define "hyp.config" -}}
{{- $owned := dict
  "server" (dict "addr" (printf ":%d" (int .Values.ports.http)))
  "admin" (dict "addr" (printf ":%d" (int .Values.ports.admin)))
  "drain" (dict "delay" (printf "%ds" (int .Values.drain.delaySeconds)) "timeout" (printf "%ds" (int .Values.drain.timeoutSeconds)))
  "supervisor" (dict "pid_file" "/tmp/hyp.pid")
}}
{{- if .Values.tls.enabled }}
{{- $_ := set $owned.server "tls" (dict "enabled" true "cert_file" "/etc/hyp/tls/tls.crt" "key_file" "/etc/hyp/tls/tls.key") }}
{{- end }}
{{- $tcp := dict }}
{{- range $name, $svc := .Values.tcp }}
{{- $_ := set $tcp $name (dict "addr" (printf ":%d" (int $svc.port))) }}
{{- end }}
{{- $_ := set $owned "tcp" $tcp }}
{{- $user := deepCopy (.Values.config | default dict) }}
{{- $defaults := dict }}
{{- $workers := include "hyp.podCpus" . }}
{{- if and $workers (not (hasKey ($user.supervisor | default dict) "workers")) }}
{{- $_ := set $defaults "supervisor" (dict "workers" (int $workers)) }}
{{- end }}
{{- $config := mustMergeOverwrite $defaults $user $owned }}
{{- toYaml $config }}
{{- end }}
