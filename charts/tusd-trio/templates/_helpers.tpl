{{/* ---------------------------------------------------------------- names and labels */}}

{{- define "tusd-trio.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tusd-trio.fullname" -}}
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

{{- define "tusd-trio.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tusd-trio.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tusd-trio.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tusd-trio.labels" -}}
helm.sh/chart: {{ include "tusd-trio.chart" . }}
{{ include "tusd-trio.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tusd-trio.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tusd-trio.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tusd-trio.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* ---------------------------------------------------------------- small functions */}}

{{/*
A value as the text of a flag: booleans as true/false, whole numbers without an exponent
(YAML numbers reach templates as float64, and 1e+09 is no valid flag value).
*/}}
{{- define "tusd-trio.text" -}}
{{- if kindIs "bool" . }}{{ ternary "true" "false" . }}
{{- else if or (kindIs "float64" .) (kindIs "float32" .) }}
{{- if eq (float64 .) (float64 (int64 .)) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else }}{{ . }}
{{- end }}
{{- end }}

{{/*
Seconds in a Go duration ("10s", "1m30s", "500ms", "0"), rounded up; fails on anything else.
Call with (list "the.value.path" $duration).
*/}}
{{- define "tusd-trio.durationSeconds" -}}
{{- $where := index . 0 }}
{{- $text := toString (index . 1) | trim }}
{{- $units := dict "ns" 0.000000001 "us" 0.000001 "µs" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 }}
{{- if eq $text "0" }}0
{{- else if not (regexMatch "^([0-9]+(\\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$" $text) }}
{{- fail (printf "tusd-trio: %s=%q is not a Go duration (e.g. 10s, 1m30s, 500ms)" $where $text) }}
{{- else }}
{{- $total := 0.0 }}
{{- range regexFindAll "[0-9]+(\\.[0-9]*)?(ns|us|µs|ms|s|m|h)" $text -1 }}
{{- $unit := regexFind "(ns|us|µs|ms|s|m|h)$" . }}
{{- $number := trimSuffix $unit . }}
{{- $total = addf $total (mulf (float64 $number) (get $units $unit)) }}
{{- end }}
{{- ceil $total | int64 }}
{{- end }}
{{- end }}

{{/*
The TCP port of a URL or host:port; (list $url $defaultPort).  http -> 80, https -> 443 when
the URL names none.
*/}}
{{- define "tusd-trio.urlPort" -}}
{{- $url := index . 0 }}
{{- $default := index . 1 }}
{{- $hostport := $url }}
{{- if contains "://" $url }}
{{- $parsed := urlParse $url }}
{{- $hostport = $parsed.host }}
{{- if eq $parsed.scheme "https" }}{{ $default = 443 }}{{ end }}
{{- if eq $parsed.scheme "http" }}{{ $default = 80 }}{{ end }}
{{- end }}
{{- $port := regexFind ":[0-9]+$" $hostport | trimPrefix ":" }}
{{- default (toString $default) $port }}
{{- end }}

{{/* ---------------------------------------------------------------- topology */}}

{{/* "true" when uploads live in storage every pod sees (an object store or an RWX volume). */}}
{{- define "tusd-trio.sharedStorage" -}}
{{- $file := .Values.storage.file }}
{{- if ne .Values.storage.type "file" }}true
{{- else if and $file.persistence.enabled (has "ReadWriteMany" $file.persistence.accessModes) }}true
{{- end }}
{{- end }}

{{/* "true" when several pods may serve the same uploads: shared storage and Redis locks. */}}
{{- define "tusd-trio.multiPod" -}}
{{- if and (include "tusd-trio.sharedStorage" .) (eq .Values.locker.type "redis") }}true{{ end }}
{{- end }}

{{- define "tusd-trio.autoscaling" -}}
{{- if kindIs "invalid" .Values.autoscaling.enabled }}
{{- include "tusd-trio.multiPod" . }}
{{- else if .Values.autoscaling.enabled }}true
{{- end }}
{{- end }}

{{- define "tusd-trio.replicas" -}}
{{- if kindIs "invalid" .Values.replicaCount }}
{{- ternary 2 1 (eq (include "tusd-trio.multiPod" .) "true") }}
{{- else }}
{{- int64 .Values.replicaCount }}
{{- end }}
{{- end }}

{{/* "true" when more than one pod can run at a time. */}}
{{- define "tusd-trio.severalPods" -}}
{{- if include "tusd-trio.autoscaling" . }}
{{- if gt (int64 .Values.autoscaling.maxReplicas) 1 }}true{{ end }}
{{- else if gt (int64 (include "tusd-trio.replicas" .)) 1 }}true
{{- end }}
{{- end }}

{{- define "tusd-trio.tlsSecretName" -}}
{{- default (include "tusd-trio.fullname" .) .Values.tls.existingSecret }}
{{- end }}

{{/* ---------------------------------------------------------------- checks */}}

{{- define "tusd-trio.validate" -}}
{{- $v := .Values }}
{{- if not (has $v.storage.type (list "file" "s3" "gcs" "azure")) }}
{{- fail (printf "tusd-trio: storage.type=%q: use file, s3, gcs or azure" $v.storage.type) }}
{{- end }}
{{- if and (eq $v.storage.type "s3") (not $v.storage.s3.bucket) }}
{{- fail "tusd-trio: storage.type=s3 needs storage.s3.bucket" }}
{{- end }}
{{- if and (eq $v.storage.type "gcs") (not $v.storage.gcs.bucket) }}
{{- fail "tusd-trio: storage.type=gcs needs storage.gcs.bucket" }}
{{- end }}
{{- if and (eq $v.storage.type "azure") (not (and $v.storage.azure.container $v.storage.azure.accountName)) }}
{{- fail "tusd-trio: storage.type=azure needs storage.azure.container and storage.azure.accountName" }}
{{- end }}
{{- if not (has $v.locker.type (list "" "file" "memory" "redis")) }}
{{- fail (printf "tusd-trio: locker.type=%q: use file, memory or redis" $v.locker.type) }}
{{- end }}
{{- if and (eq $v.locker.type "redis") (not (or $v.redis.url $v.redis.existingSecret)) }}
{{- fail "tusd-trio: locker.type=redis needs redis.url or redis.existingSecret" }}
{{- end }}
{{- if and $v.hooks.redisStream.name (not (or $v.redis.url $v.redis.existingSecret)) }}
{{- fail "tusd-trio: hooks.redisStream.name needs redis.url or redis.existingSecret" }}
{{- end }}
{{- $explicitSeveral := false }}
{{- if and (not (kindIs "invalid" $v.replicaCount)) (gt (int64 $v.replicaCount) 1) }}
{{- $explicitSeveral = true }}
{{- end }}
{{- if and (not (kindIs "invalid" $v.autoscaling.enabled)) $v.autoscaling.enabled }}
{{- $explicitSeveral = true }}
{{- end }}
{{- if and $explicitSeveral (not (include "tusd-trio.multiPod" .)) }}
{{- if eq $v.storage.type "file" }}
{{- fail (printf "tusd-trio: more than one pod (replicaCount / autoscaling.enabled) with the file store needs a volume every pod can mount and Redis locks: set storage.file.persistence.accessModes to [ReadWriteMany] with a storageClass that supports it, and locker.type=redis (now: accessModes=%v, persistence.enabled=%v, locker.type=%q). A ReadWriteOnce volume cannot be shared; leave replicaCount and autoscaling.enabled empty to run one pod." $v.storage.file.persistence.accessModes $v.storage.file.persistence.enabled $v.locker.type) }}
{{- else }}
{{- fail (printf "tusd-trio: more than one pod (replicaCount / autoscaling.enabled) needs locker.type=redis (now %q), or two pods may write the same upload at once" $v.locker.type) }}
{{- end }}
{{- end }}
{{- if and (include "tusd-trio.autoscaling" .) (gt (int64 $v.autoscaling.minReplicas) (int64 $v.autoscaling.maxReplicas)) }}
{{- fail "tusd-trio: autoscaling.minReplicas is above autoscaling.maxReplicas" }}
{{- end }}
{{- $shutdown := include "tusd-trio.durationSeconds" (list "tusd.shutdownTimeout" $v.tusd.shutdownTimeout) | int64 }}
{{- $needed := add $shutdown (int64 $v.preStopSleepSeconds) }}
{{- if le (int64 $v.terminationGracePeriodSeconds) $needed }}
{{- fail (printf "tusd-trio: terminationGracePeriodSeconds=%v must be above tusd.shutdownTimeout (%vs) + preStopSleepSeconds (%v), or pods are killed while saving uploads" $v.terminationGracePeriodSeconds $shutdown $v.preStopSleepSeconds) }}
{{- end }}
{{- if not (has $v.service.type (list "ClusterIP" "NodePort" "LoadBalancer")) }}
{{- fail (printf "tusd-trio: service.type=%q: use LoadBalancer, NodePort or ClusterIP" $v.service.type) }}
{{- end }}
{{- if not (has $v.service.sessionAffinity (list "None" "ClientIP")) }}
{{- fail (printf "tusd-trio: service.sessionAffinity=%q: use None or ClientIP" $v.service.sessionAffinity) }}
{{- end }}
{{- if and $v.tls.enabled (not $v.tls.existingSecret) (not (and $v.tls.certificate $v.tls.key)) }}
{{- fail "tusd-trio: tls.enabled needs tls.certificate and tls.key, or tls.existingSecret" }}
{{- end }}
{{- if and $v.serviceMonitor.enabled (not $v.metrics.enabled) }}
{{- fail "tusd-trio: serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- $metricsPort := include "tusd-trio.metricsPort" . }}
{{- if and $metricsPort (or (lt (int64 $metricsPort) 1) (gt (int64 $metricsPort) 65535) (eq (int64 $metricsPort) 1080)) }}
{{- fail (printf "tusd-trio: metrics.port=%v: use a free port from 1 to 65535 other than 1080 (uploads), or empty" $v.metrics.port) }}
{{- end }}
{{- end }}

{{/*
The port of the separate metrics listener (metrics.port) as text, empty when the metrics
are off or stay on the upload port.
*/}}
{{- define "tusd-trio.metricsPort" -}}
{{- if and .Values.metrics.enabled (not (eq (toString .Values.metrics.port) "")) -}}
{{- include "tusd-trio.text" .Values.metrics.port -}}
{{- end -}}
{{- end }}

{{/* ---------------------------------------------------------------- flags */}}

{{/*
The daemon's flags as a YAML list of {flag, env, value} (value goes to the ConfigMap) or
{flag, env, secret, key} (read from a Secret).  The Deployment passes each as -flag=$(env).
*/}}
{{- define "tusd-trio.flags" -}}
{{- $v := .Values }}
{{- $flags := list }}
{{- $add := dict }}
{{- $flags = append $flags (dict "flag" "host" "value" "0.0.0.0") }}
{{- $flags = append $flags (dict "flag" "port" "value" "1080") }}
{{- $flags = append $flags (dict "flag" "base-path" "value" $v.tusd.basePath) }}
{{- $flags = append $flags (dict "flag" "max-size" "value" (include "tusd-trio.text" $v.tusd.maxSize)) }}
{{- $flags = append $flags (dict "flag" "behind-proxy" "value" (include "tusd-trio.text" $v.tusd.behindProxy)) }}
{{- $flags = append $flags (dict "flag" "shutdown-timeout" "value" (toString $v.tusd.shutdownTimeout)) }}
{{- $flags = append $flags (dict "flag" "log-format" "value" $v.tusd.logFormat) }}
{{- $flags = append $flags (dict "flag" "expose-metrics" "value" (include "tusd-trio.text" $v.metrics.enabled)) }}
{{- if $v.metrics.enabled }}
{{- $flags = append $flags (dict "flag" "metrics-path" "value" $v.metrics.path) }}
{{- if include "tusd-trio.metricsPort" . }}
{{- $flags = append $flags (dict "flag" "metrics-listen" "value" (printf "0.0.0.0:%s" (include "tusd-trio.metricsPort" .))) }}
{{- end }}
{{- end }}
{{- /* storage */}}
{{- $type := $v.storage.type }}
{{- if eq $type "file" }}
{{- $flags = append $flags (dict "flag" "upload-dir" "value" $v.storage.file.uploadDir) }}
{{- else if eq $type "s3" }}
{{- $s3 := $v.storage.s3 }}
{{- $flags = append $flags (dict "flag" "s3-bucket" "value" $s3.bucket) }}
{{- if $s3.endpoint }}{{ $flags = append $flags (dict "flag" "s3-endpoint" "value" $s3.endpoint) }}{{ end }}
{{- if $s3.objectPrefix }}{{ $flags = append $flags (dict "flag" "s3-object-prefix" "value" $s3.objectPrefix) }}{{ end }}
{{- if not (eq (toString $s3.partSize) "") }}{{ $flags = append $flags (dict "flag" "s3-part-size" "value" (include "tusd-trio.text" $s3.partSize)) }}{{ end }}
{{- else if eq $type "gcs" }}
{{- $gcs := $v.storage.gcs }}
{{- $flags = append $flags (dict "flag" "gcs-bucket" "value" $gcs.bucket) }}
{{- if $gcs.endpoint }}{{ $flags = append $flags (dict "flag" "gcs-endpoint" "value" $gcs.endpoint) }}{{ end }}
{{- if $gcs.objectPrefix }}{{ $flags = append $flags (dict "flag" "gcs-object-prefix" "value" $gcs.objectPrefix) }}{{ end }}
{{- else if eq $type "azure" }}
{{- $az := $v.storage.azure }}
{{- $flags = append $flags (dict "flag" "azure-storage" "value" $az.container) }}
{{- if $az.endpoint }}{{ $flags = append $flags (dict "flag" "azure-endpoint" "value" $az.endpoint) }}{{ end }}
{{- if $az.objectPrefix }}{{ $flags = append $flags (dict "flag" "azure-object-prefix" "value" $az.objectPrefix) }}{{ end }}
{{- end }}
{{- /* locks */}}
{{- if $v.locker.type }}
{{- $flags = append $flags (dict "flag" "locker" "value" $v.locker.type) }}
{{- end }}
{{- /* Redis: for the locks and/or the hook stream */}}
{{- if or (eq $v.locker.type "redis") $v.hooks.redisStream.name }}
{{- if $v.redis.existingSecret }}
{{- $flags = append $flags (dict "flag" "redis-url" "secret" $v.redis.existingSecret "key" $v.redis.existingSecretKey) }}
{{- else }}
{{- $flags = append $flags (dict "flag" "redis-url" "value" $v.redis.url) }}
{{- end }}
{{- end }}
{{- if eq $v.locker.type "redis" }}
{{- $flags = append $flags (dict "flag" "redis-lock-ttl" "value" (toString $v.redis.lockTTL)) }}
{{- end }}
{{- /* hooks */}}
{{- $h := $v.hooks }}
{{- if $h.enabledEvents }}{{ $flags = append $flags (dict "flag" "hooks-enabled-events" "value" $h.enabledEvents) }}{{ end }}
{{- if $h.http.url }}
{{- $flags = append $flags (dict "flag" "hooks-http" "value" $h.http.url) }}
{{- if $h.http.forwardHeaders }}{{ $flags = append $flags (dict "flag" "hooks-http-forward-headers" "value" $h.http.forwardHeaders) }}{{ end }}
{{- if not (eq (toString $h.http.retry) "") }}{{ $flags = append $flags (dict "flag" "hooks-http-retry" "value" (include "tusd-trio.text" $h.http.retry)) }}{{ end }}
{{- if $h.http.backoff }}{{ $flags = append $flags (dict "flag" "hooks-http-backoff" "value" (toString $h.http.backoff)) }}{{ end }}
{{- if $h.http.timeout }}{{ $flags = append $flags (dict "flag" "hooks-http-timeout" "value" (toString $h.http.timeout)) }}{{ end }}
{{- end }}
{{- if $h.grpc.address }}{{ $flags = append $flags (dict "flag" "hooks-grpc" "value" $h.grpc.address) }}{{ end }}
{{- if $h.redisStream.name }}
{{- $flags = append $flags (dict "flag" "hooks-redis-stream" "value" $h.redisStream.name) }}
{{- if not (eq (toString $h.redisStream.maxlen) "") }}{{ $flags = append $flags (dict "flag" "hooks-redis-stream-maxlen" "value" (include "tusd-trio.text" $h.redisStream.maxlen)) }}{{ end }}
{{- end }}
{{- if $h.blockingTimeout }}{{ $flags = append $flags (dict "flag" "hooks-blocking-timeout" "value" (toString $h.blockingTimeout)) }}{{ end }}
{{- /* TLS: files from the mounted Secret */}}
{{- if $v.tls.enabled }}
{{- $flags = append $flags (dict "flag" "tls-certificate" "value" "/etc/tusd-trio/tls/tls.crt") }}
{{- $flags = append $flags (dict "flag" "tls-key" "value" "/etc/tusd-trio/tls/tls.key") }}
{{- if $v.tls.mode }}{{ $flags = append $flags (dict "flag" "tls-mode" "value" $v.tls.mode) }}{{ end }}
{{- end }}
{{- /* anything else */}}
{{- $taken := list }}
{{- range $flags }}{{ $taken = append $taken .flag }}{{ end }}
{{- range $name, $value := $v.tusd.extraFlags }}
{{- $clean := trimPrefix "-" (trimPrefix "-" $name) }}
{{- if has $clean $taken }}
{{- fail (printf "tusd-trio: tusd.extraFlags.%s is set by the chart from its own value; set that value instead" $name) }}
{{- end }}
{{- $flags = append $flags (dict "flag" $clean "value" (include "tusd-trio.text" $value)) }}
{{- end }}
{{- $out := list }}
{{- range $flags }}
{{- $out = append $out (merge (dict "env" (printf "TUSD_%s" (.flag | upper | replace "-" "_"))) .) }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
Plain (non-secret) environment of the daemon, kept in the ConfigMap next to the flags.
*/}}
{{- define "tusd-trio.configEnv" -}}
{{- $env := dict }}
{{- $v := .Values }}
{{- if and (eq $v.storage.type "s3") $v.storage.s3.region }}
{{- $_ := set $env "AWS_REGION" $v.storage.s3.region }}
{{- end }}
{{- if eq $v.storage.type "azure" }}
{{- $_ := set $env "AZURE_STORAGE_ACCOUNT" $v.storage.azure.accountName }}
{{- end }}
{{- if and (eq $v.storage.type "gcs") (or $v.storage.gcs.serviceAccountJson $v.storage.gcs.existingSecret) }}
{{- $_ := set $env "GCS_SERVICE_ACCOUNT_FILE" "/etc/tusd-trio/gcs/service-account.json" }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/*
The keys of the chart's Secret: only the credentials that are set and not taken from a Secret
of the user's.  A YAML map of key -> plain value.
*/}}
{{- define "tusd-trio.secretData" -}}
{{- $data := dict }}
{{- $v := .Values }}
{{- $s := $v.storage }}
{{- if and (eq $s.type "s3") (not $s.s3.existingSecret) }}
{{- if $s.s3.accessKeyId }}{{ $_ := set $data "AWS_ACCESS_KEY_ID" $s.s3.accessKeyId }}{{ end }}
{{- if $s.s3.secretAccessKey }}{{ $_ := set $data "AWS_SECRET_ACCESS_KEY" $s.s3.secretAccessKey }}{{ end }}
{{- end }}
{{- if and (eq $s.type "gcs") (not $s.gcs.existingSecret) $s.gcs.serviceAccountJson }}
{{- $_ := set $data "service-account.json" $s.gcs.serviceAccountJson }}
{{- end }}
{{- if and (eq $s.type "azure") (not $s.azure.existingSecret) $s.azure.accountKey }}
{{- $_ := set $data "AZURE_STORAGE_KEY" $s.azure.accountKey }}
{{- end }}
{{- if and $v.tls.enabled (not $v.tls.existingSecret) }}
{{- $_ := set $data "tls.crt" $v.tls.certificate }}
{{- $_ := set $data "tls.key" $v.tls.key }}
{{- end }}
{{- toYaml $data }}
{{- end }}

{{/*
Environment variables read from Secrets: a YAML list of {env, secret, key}.
*/}}
{{- define "tusd-trio.secretEnv" -}}
{{- $out := list }}
{{- $v := .Values }}
{{- $s := $v.storage }}
{{- $own := include "tusd-trio.fullname" . }}
{{- if eq $s.type "s3" }}
{{- if $s.s3.existingSecret }}
{{- $out = append $out (dict "env" "AWS_ACCESS_KEY_ID" "secret" $s.s3.existingSecret "key" "AWS_ACCESS_KEY_ID") }}
{{- $out = append $out (dict "env" "AWS_SECRET_ACCESS_KEY" "secret" $s.s3.existingSecret "key" "AWS_SECRET_ACCESS_KEY") }}
{{- else }}
{{- if $s.s3.accessKeyId }}{{ $out = append $out (dict "env" "AWS_ACCESS_KEY_ID" "secret" $own "key" "AWS_ACCESS_KEY_ID") }}{{ end }}
{{- if $s.s3.secretAccessKey }}{{ $out = append $out (dict "env" "AWS_SECRET_ACCESS_KEY" "secret" $own "key" "AWS_SECRET_ACCESS_KEY") }}{{ end }}
{{- end }}
{{- end }}
{{- if eq $s.type "azure" }}
{{- if $s.azure.existingSecret }}
{{- $out = append $out (dict "env" "AZURE_STORAGE_KEY" "secret" $s.azure.existingSecret "key" "AZURE_STORAGE_KEY") }}
{{- else if $s.azure.accountKey }}
{{- $out = append $out (dict "env" "AZURE_STORAGE_KEY" "secret" $own "key" "AZURE_STORAGE_KEY") }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* Checksums that roll the pods when their configuration changes. */}}
{{- define "tusd-trio.configChecksum" -}}
{{- list (include "tusd-trio.flags" .) (include "tusd-trio.configEnv" .) | toJson | sha256sum }}
{{- end }}

{{- define "tusd-trio.secretChecksum" -}}
{{- include "tusd-trio.secretData" . | sha256sum }}
{{- end }}
