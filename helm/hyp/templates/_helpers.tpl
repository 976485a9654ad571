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

{{/* The metrics Service: the full name cut to leave room for "-metrics" in 63 characters. */}}
{{- define "hyp.metricsName" -}}
{{- printf "%s-metrics" (include "hyp.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{- define "hyp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hyp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hyp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The image tag (or appVersion) as a label value: a tag may hold 128
characters, a label value 63 of [A-Za-z0-9_.-], starting and ending
alphanumeric. regexReplaceAll takes its input last, so it is not piped into.
*/}}
{{- define "hyp.versionLabel" -}}
{{- $version := regexReplaceAll "[^A-Za-z0-9_.-]" (.Values.image.tag | default .Chart.AppVersion | toString) "_" | trunc 63 }}
{{- regexReplaceAll "^[^A-Za-z0-9]+|[^A-Za-z0-9]+$" $version "" }}
{{- end }}

{{- define "hyp.labels" -}}
helm.sh/chart: {{ include "hyp.chart" . }}
{{ include "hyp.selectorLabels" . }}
app.kubernetes.io/version: {{ include "hyp.versionLabel" . | quote }}
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
the grace period; the PID file must be under the writable /tmp; with
drain.waitForEndpoints the drain watches the chart's own Service).
*/}}
{{- define "hyp.config" -}}
{{- $owned := dict
  "server" (dict "addr" (printf ":%d" (int .Values.ports.http)))
  "admin" (dict "addr" (printf ":%d" (int .Values.ports.admin)))
  "drain" (dict "delay" (printf "%ds" (int .Values.drain.delaySeconds)) "timeout" (printf "%ds" (int .Values.drain.timeoutSeconds)))
  "supervisor" (dict "pid_file" "/tmp/hyp.pid")
}}
{{- if .Values.drain.waitForEndpoints }}
{{- $_ := set $owned.drain "endpoints" (dict "service" (include "hyp.fullname" .)) }}
{{- end }}
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

{{/*
Values hyp would refuse at start (exit 2: a restart loop, a rollout that
never finishes) or the API server would reject, refused at `helm template`
with the value's name. Renders nothing.
*/}}
{{- define "hyp.validate" -}}
{{- /* every listener needs its own container port */ -}}
{{- $claims := list (list "ports.http" .Values.ports.http) (list "ports.admin" .Values.ports.admin) }}
{{- range $name, $svc := .Values.tcp }}
{{- if has $name (list "http" "h3" "admin") }}
{{- fail (printf "tcp.%s: http, h3 and admin are hyp's own listener names; give the TCP service another name" $name) }}
{{- end }}
{{- if or (hasSuffix "-" $name) (contains "--" $name) }}
{{- fail (printf "tcp.%s: the name becomes the port name tcp-%s, which may neither end in - nor hold --" $name $name) }}
{{- end }}
{{- $claims = append $claims (list (printf "tcp.%s.port" $name) $svc.port) }}
{{- end }}
{{- $taken := dict }}
{{- range $claims }}
{{- $port := toString (int (index . 1)) }}
{{- if hasKey $taken $port }}
{{- fail (printf "%s: container port %s is also %s; every listener needs its own port" (index . 0) $port (get $taken $port)) }}
{{- end }}
{{- $_ := set $taken $port (index . 0) }}
{{- end }}
{{- /* and every Service port its own number */ -}}
{{- $claims = list (list "service.port" .Values.service.port) }}
{{- range $name, $svc := .Values.tcp }}
{{- $claims = append $claims (list (printf "tcp.%s.servicePort" $name) ($svc.servicePort | default $svc.port)) }}
{{- end }}
{{- if .Values.service.exposeAdmin }}
{{- $claims = append $claims (list "ports.admin (service.exposeAdmin)" .Values.ports.admin) }}
{{- end }}
{{- $taken = dict }}
{{- range $claims }}
{{- $port := toString (int (index . 1)) }}
{{- if hasKey $taken $port }}
{{- fail (printf "%s: Service port %s is also %s; every Service port needs its own number" (index . 0) $port (get $taken $port)) }}
{{- end }}
{{- $_ := set $taken $port (index . 0) }}
{{- end }}
{{- /* a PodDisruptionBudget that allows no eviction hangs every node drain and cluster upgrade */ -}}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if $pdb.enabled }}
{{- $replicas := int .Values.replicaCount }}
{{- $replicasFrom := "replicaCount" }}
{{- if .Values.autoscaling.enabled }}
{{- $replicas = int .Values.autoscaling.minReplicas }}
{{- $replicasFrom = "autoscaling.minReplicas" }}
{{- end }}
{{- if not (kindIs "invalid" $pdb.minAvailable) }}
{{- $min := toString $pdb.minAvailable }}
{{- if or (eq $min "100%") (and (not (hasSuffix "%" $min)) (ge (int $min) $replicas) (gt $replicas 0)) }}
{{- fail (printf "podDisruptionBudget.minAvailable %s with %s %d lets no pod be evicted: node drains and cluster upgrades would hang; lower it, or set podDisruptionBudget.enabled=false" $min $replicasFrom $replicas) }}
{{- end }}
{{- else if has (toString $pdb.maxUnavailable) (list "0" "0%") }}
{{- fail (printf "podDisruptionBudget.maxUnavailable %v lets no pod be evicted: node drains and cluster upgrades would hang; use 1, or set podDisruptionBudget.enabled=false" $pdb.maxUnavailable) }}
{{- end }}
{{- end }}
{{- /* an HPA Kubernetes would reject or that cannot measure its target */ -}}
{{- $hpa := .Values.autoscaling }}
{{- if $hpa.enabled }}
{{- if gt (int $hpa.minReplicas) (int $hpa.maxReplicas) }}
{{- fail (printf "autoscaling.minReplicas %d is above autoscaling.maxReplicas %d" (int $hpa.minReplicas) (int $hpa.maxReplicas)) }}
{{- end }}
{{- $requests := dig "requests" dict (.Values.resources | default dict) }}
{{- if and $hpa.targetCPUUtilizationPercentage (not $requests.cpu) }}
{{- fail "autoscaling.targetCPUUtilizationPercentage needs resources.requests.cpu: utilisation is measured against the request (the HPA would report FailedGetResourceMetric and never scale)" }}
{{- end }}
{{- if and $hpa.targetMemoryUtilizationPercentage (not $requests.memory) }}
{{- fail "autoscaling.targetMemoryUtilizationPercentage needs resources.requests.memory: utilisation is measured against the request (the HPA would report FailedGetResourceMetric and never scale)" }}
{{- end }}
{{- if not (or $hpa.targetCPUUtilizationPercentage $hpa.targetMemoryUtilizationPercentage) }}
{{- fail "autoscaling.enabled needs autoscaling.targetCPUUtilizationPercentage or autoscaling.targetMemoryUtilizationPercentage (with neither, Kubernetes scales on 80% CPU)" }}
{{- end }}
{{- end }}
{{- /* hyp.yaml keys the chart sets from values: env and --set would override them (env > file) */ -}}
{{- $owned := dict "server.addr" "ports.http" "admin.addr" "ports.admin" "drain.delay" "drain.delaySeconds" "drain.timeout" "drain.timeoutSeconds" "supervisor.pid_file" "supervisor.pid_file (fixed at /tmp/hyp.pid, the writable emptyDir)" "app" "app.module" }}
{{- if .Values.drain.waitForEndpoints }}
{{- $_ := set $owned "drain.endpoints.service" "drain.waitForEndpoints (the chart's Service; set it to false to watch another)" }}
{{- if dig "drain" "endpoints" "service" "" (.Values.config | default dict) }}
{{- fail "config.drain.endpoints.service: the chart sets it to its own Service when drain.waitForEndpoints is true; set drain.waitForEndpoints=false to watch another Service" }}
{{- end }}
{{- end }}
{{- $ownedEnv := dict "PORT" "ports.http" "HYP_CONFIG" "config (the ConfigMap's hyp.yaml)" }}
{{- range $key, $from := $owned }}
{{- if ne $key "app" }}
{{- $_ := set $ownedEnv (printf "HYP_%s" (upper (replace "." "_" $key))) $from }}
{{- end }}
{{- end }}
{{- range .Values.extraEnv }}
{{- $from := get $ownedEnv .name }}
{{- if and (not $from) (regexMatch "^HYP_TCP_.+_ADDR$" .name) }}
{{- $from = "tcp.<name>.port" }}
{{- end }}
{{- if $from }}
{{- fail (printf "extraEnv %s: would override what the chart sets from %s (the pod's ports, probes and grace period follow that value); set it there" .name $from) }}
{{- end }}
{{- end }}
{{- $args := .Values.app.extraArgs }}
{{- range $i, $arg := $args }}
{{- if or (has $arg (list "-c" "--config")) (hasPrefix "--config=" $arg) }}
{{- fail (printf "app.extraArgs %s: the chart gives hyp its config file; put hyp.yaml keys under config" $arg) }}
{{- end }}
{{- $set := "" }}
{{- if hasPrefix "--set=" $arg }}
{{- $set = trimPrefix "--set=" $arg }}
{{- else if and (eq $arg "--set") (lt (add1 $i) (len $args)) }}
{{- $set = index $args (add1 $i) }}
{{- end }}
{{- if $set }}
{{- $key := regexReplaceAll "=.*$" $set "" }}
{{- $from := get $owned $key }}
{{- if and (not $from) (regexMatch "^tcp\\.[^.]+\\.addr$" $key) }}
{{- $from = "tcp.<name>.port" }}
{{- end }}
{{- if $from }}
{{- fail (printf "app.extraArgs --set %s: would override what the chart sets from %s (the pod's ports, probes and grace period follow that value); set it there" $set $from) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
