{{/*
Names and labels. Every template in this library is called with the root context of the service chart
(`.`), so `.Chart` is the service chart, not this library.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "tessera-common.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The resource name. A release named like its chart (`helm install storage charts/storage`) keeps the bare name,
so the Service DNS name is simply `storage.<namespace>`.
*/}}
{{- define "tessera-common.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tessera-common.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the pods of one release; immutable once a Deployment exists. */}}
{{- define "tessera-common.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tessera-common.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
All labels. `app.kubernetes.io/component` is always the chart name (asset, storage, compute, event, gateway):
the NetworkPolicies select peers on it, so it must not follow nameOverride.
*/}}
{{- define "tessera-common.labels" -}}
helm.sh/chart: {{ include "tessera-common.chart" . }}
{{ include "tessera-common.selectorLabels" . }}
app.kubernetes.io/component: {{ .Chart.Name }}
app.kubernetes.io/part-of: tessera
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.organization }}
tessera.io/organization: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "tessera-common.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tessera-common.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tessera-common.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
