{{/* Names */}}
{{- define "cds.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cds.fullname" -}}
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

{{- define "cds.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels. part-of is constant: the ServiceMonitor uses it as the Prometheus job name ("cds"), which the
alert rules select on. */}}
{{- define "cds.labels" -}}
helm.sh/chart: {{ include "cds.chart" . }}
app.kubernetes.io/name: {{ include "cds.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cds
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: (dict "ctx" $ "component" "api") */}}
{{- define "cds.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cds.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "cds.componentLabels" -}}
{{ include "cds.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "cds.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cds.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cds.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "cds.secretName" -}}
{{- default (include "cds.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* "true" when Redis is configured (the indexer runs only then). */}}
{{- define "cds.redisConfigured" -}}
{{- if or .Values.redis.url .Values.secrets.redisUrl .Values.redis.urlFromExistingSecret }}true{{ end }}
{{- end }}

{{- define "cds.registryFile" -}}/etc/cds/registry/registry.json{{- end }}
{{- define "cds.esCaDir" -}}/etc/cds/es-ca{{- end }}

{{/* The non-secret CDS_* settings as a YAML map (ConfigMap data, and the index-init Job's env). A setting
whose value is empty is left out so that the service's own default applies. */}}
{{- define "cds.configData" -}}
{{- $v := .Values }}
{{- $d := dict "CDS_DATA_DIR" "/data" }}
{{- $pairs := list
  (list "CDS_SUBSCRIBER_ID" $v.config.subscriberId)
  (list "CDS_SUBSCRIBER_URL" $v.config.subscriberUrl)
  (list "CDS_KEY_ID" $v.config.keyId)
  (list "CDS_DOMAIN" $v.config.domain)
  (list "CDS_TIMEZONE" $v.config.timezone)
  (list "CDS_BASE_PATH" $v.config.basePath)
  (list "CDS_LOG_LEVEL" $v.config.logLevel)
  (list "CDS_ALLOW_PRIVATE_CALLBACKS" $v.config.allowPrivateCallbacks)
  (list "CDS_FANOUT_TIMEOUT_MS" $v.config.fanoutTimeoutMs)
  (list "CDS_FANOUT_MAX_BPPS" $v.config.fanoutMaxBpps)
  (list "CDS_MAX_RESULTS" $v.config.maxResults)
  (list "CDS_MAX_DISCOVER_BYTES" $v.config.maxDiscoverBytes)
  (list "CDS_MAX_PUBLISH_BYTES" $v.config.maxPublishBytes)
  (list "CDS_REGISTRY_URL" $v.registry.url)
  (list "CDS_REGISTRY_TYPE" $v.registry.type)
  (list "CDS_REGISTRY_NAMESPACE" $v.registry.namespace)
  (list "CDS_REGISTRY_NETWORK_NAMESPACE" $v.registry.networkNamespace)
  (list "CDS_REGISTRY_NETWORK_REGISTRY" $v.registry.networkRegistry)
  (list "CDS_REDIS_URL" $v.redis.url)
}}
{{- if $v.elasticsearch.url }}
{{- $pairs = concat $pairs (list
  (list "CDS_ES_URL" $v.elasticsearch.url)
  (list "CDS_ES_INDEX_PREFIX" $v.elasticsearch.indexPrefix)
  (list "CDS_ES_REFRESH" $v.elasticsearch.refresh)
  (list "CDS_ES_VERIFY_CERTS" $v.elasticsearch.verifyCerts)) }}
{{- if $v.elasticsearch.caSecret.name }}
{{- $_ := set $d "CDS_ES_CA_CERTS" (printf "%s/%s" (include "cds.esCaDir" .) $v.elasticsearch.caSecret.key) }}
{{- end }}
{{- end }}
{{- if $v.registry.records }}
{{- $_ := set $d "CDS_REGISTRY_FILE" (include "cds.registryFile" .) }}
{{- end }}
{{- range $pairs }}
{{- $val := index . 1 }}
{{- if and (not (kindIs "invalid" $val)) (ne (toString $val) "") }}
{{- $_ := set $d (index . 0) (toString $val) }}
{{- end }}
{{- end }}
{{- range $k, $val := $v.config.extra }}
{{- if not (hasPrefix "CDS_" $k) }}
{{- fail (printf "config.extra: %s is not a CDS_* variable" $k) }}
{{- end }}
{{- $_ := set $d $k (toString $val) }}
{{- end }}
{{- toYaml $d }}
{{- end }}

{{/* Secret data (plain values; the Secret template encodes them). */}}
{{- define "cds.secretData" -}}
{{- $s := .Values.secrets }}
{{- $d := dict }}
{{- with $s.signingPrivateKey }}{{ $_ := set $d "CDS_SIGNING_PRIVATE_KEY" . }}{{ end }}
{{- with $s.esApiKey }}{{ $_ := set $d "CDS_ES_API_KEY" . }}{{ end }}
{{- with $s.esUsername }}{{ $_ := set $d "CDS_ES_USERNAME" . }}{{ end }}
{{- with $s.esPassword }}{{ $_ := set $d "CDS_ES_PASSWORD" . }}{{ end }}
{{- with $s.redisUrl }}{{ $_ := set $d "CDS_REDIS_URL" . }}{{ end }}
{{- toYaml $d }}
{{- end }}

{{/* Checks that stop a bad install at render time. */}}
{{- define "cds.validate" -}}
{{- $v := .Values }}
{{- if and (not $v.elasticsearch.url) (or (gt (int $v.api.replicaCount) 1) $v.api.autoscaling.enabled) }}
{{- fail "the embedded index lives in each pod: set elasticsearch.url to run more than one API replica or to autoscale" }}
{{- end }}
{{- if and $v.persistence.enabled (or (gt (int $v.api.replicaCount) 1) $v.api.autoscaling.enabled) }}
{{- fail "persistence (a ReadWriteOnce volume for /data) supports a single API replica: disable autoscaling and set api.replicaCount=1" }}
{{- end }}
{{- if and $v.secrets.existingSecret (or $v.secrets.signingPrivateKey $v.secrets.esApiKey $v.secrets.esUsername $v.secrets.esPassword $v.secrets.redisUrl) }}
{{- fail "set either secrets.existingSecret or the secrets.* values, not both" }}
{{- end }}
{{- if and $v.secrets.redisUrl $v.redis.url }}
{{- fail "set either redis.url (no credentials) or secrets.redisUrl (with credentials), not both" }}
{{- end }}
{{- if and $v.redis.urlFromExistingSecret (not $v.secrets.existingSecret) }}
{{- fail "redis.urlFromExistingSecret needs secrets.existingSecret" }}
{{- end }}
{{- end }}

{{/* Volumes and mounts shared by every CDS container. */}}
{{- define "cds.volumes" -}}
- name: tmp
  {{- if .Values.tmpSizeLimit }}
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- if .Values.elasticsearch.caSecret.name }}
- name: es-ca
  secret:
    secretName: {{ .Values.elasticsearch.caSecret.name }}
    items:
      - key: {{ .Values.elasticsearch.caSecret.key }}
        path: {{ .Values.elasticsearch.caSecret.key }}
{{- end }}
{{- if .Values.registry.records }}
- name: registry
  configMap:
    name: {{ include "cds.fullname" . }}-registry
{{- end }}
{{- end }}

{{- define "cds.volumeMounts" -}}
- name: data
  mountPath: /data
- name: tmp
  mountPath: /tmp
{{- if .Values.elasticsearch.caSecret.name }}
- name: es-ca
  mountPath: {{ include "cds.esCaDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.registry.records }}
- name: registry
  mountPath: {{ dir (include "cds.registryFile" .) }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "cds.emptyDataVolume" -}}
- name: data
  {{- if .Values.persistence.emptyDirSizeLimit }}
  emptyDir:
    sizeLimit: {{ .Values.persistence.emptyDirSizeLimit }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- end }}

{{/* env / envFrom of the long-running CDS containers. */}}
{{- define "cds.envFrom" -}}
- configMapRef:
    name: {{ include "cds.fullname" . }}
- secretRef:
    name: {{ include "cds.secretName" . }}
{{- with .Values.extraEnvFrom }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Annotations that roll the pods when their configuration changes. */}}
{{- define "cds.configChecksums" -}}
checksum/config: {{ include "cds.configData" . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ include "cds.secretData" . | sha256sum }}
{{- end }}
{{- if .Values.registry.records }}
checksum/registry: {{ toJson .Values.registry.records | sha256sum }}
{{- end }}
{{- end }}
